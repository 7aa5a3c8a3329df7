"""The S3 and Route53 clients of the infra adapters; AWS fault translation is libs.aws."""

from __future__ import annotations

from typing import Any

import boto3

from libs.aws import CLIENT_CONFIG
from libs.aws import client as client
from libs.aws import error_code as error_code
from libs.aws import faults_as_unavailable as faults_as_unavailable


def clients() -> tuple[Any, Any]:
    """An S3 and a Route53 client, made once per worker (boto3 clients are thread-safe).

    The endpoint comes from AWS_ENDPOINT_URL when set (moto in development
    and tests), else from AWS itself; credentials and region from the usual
    AWS variables or instance role.
    """
    session = boto3.session.Session()
    return session.client("s3", config=CLIENT_CONFIG), session.client("route53", config=CLIENT_CONFIG)
