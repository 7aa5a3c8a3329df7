"""AWS clients and fault translation shared by the S3 and Route53 adapters."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import botocore.exceptions
from botocore.config import Config

from services.infra.providers import Unavailable

# Standard mode retries throttling and 5xx a few times with backoff inside one
# call; what still fails becomes `Unavailable` and Temporal retries the activity.
CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=5, read_timeout=10)

_FAULT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "SlowDown",
        "PriorRequestNotComplete",
        "RequestTimeout",
        "InternalError",
        "ServiceUnavailable",
    }
)


def clients() -> tuple[Any, Any]:
    """An S3 and a Route53 client, made once per worker (boto3 clients are thread-safe).

    The endpoint comes from AWS_ENDPOINT_URL when set (moto in development
    and tests), else from AWS itself; credentials and region from the usual
    AWS variables or instance role.
    """
    session = boto3.session.Session()
    return session.client("s3", config=CLIENT_CONFIG), session.client("route53", config=CLIENT_CONFIG)


def client(service: str) -> Any:
    """One more client of the same kind (ECS, say), from the same settings as `clients()`."""
    return boto3.session.Session().client(service, config=CLIENT_CONFIG)


def error_code(err: botocore.exceptions.ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


@contextmanager
def faults_as_unavailable(what: str) -> Iterator[None]:
    """Turns throttling, 5xx and connection faults into `Unavailable`; other errors pass."""
    try:
        yield
    except botocore.exceptions.ClientError as err:
        status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if error_code(err) in _FAULT_CODES or status >= 500:
            raise Unavailable(f"{what}: {error_code(err) or status}") from err
        raise
    except (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError) as err:
        raise Unavailable(f"{what}: {type(err).__name__}") from err
