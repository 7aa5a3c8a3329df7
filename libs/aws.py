"""boto3 clients and AWS fault translation for every domain that calls AWS
(infra, the tenant-data worker's backups and secrets)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import botocore.exceptions
from botocore.config import Config

from libs.errors import Unavailable

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


def client(service: str, *, read_timeout: float | None = None) -> Any:
    """A client of `service` from the usual AWS settings (AWS_ENDPOINT_URL: moto in development)."""
    config = CLIENT_CONFIG if read_timeout is None else CLIENT_CONFIG.merge(Config(read_timeout=read_timeout))
    return boto3.session.Session().client(service, config=config)


def error_code(err: botocore.exceptions.ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


@contextmanager
def faults_as_unavailable(what: str) -> Iterator[None]:
    """Turns throttling, 5xx and connection faults into `Unavailable`; other errors pass."""
    try:
        yield
    except botocore.exceptions.ClientError as err:
        status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if error_code(err) in _FAULT_CODES or status >= 500 or status == 429:
            raise Unavailable(f"{what}: {error_code(err) or status}") from err
        raise
    except (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError) as err:
        raise Unavailable(f"{what}: {type(err).__name__}") from err
