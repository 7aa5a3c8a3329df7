"""The settings every bucket Tenantry makes gets: a tenant's, the backup
location, the IaC state (boto3's S3 client; moto in development)."""

from __future__ import annotations

from typing import Any


def secure(s3: Any, bucket: str) -> None:
    """Blocks public access, encrypts new objects (SSE-S3) and turns versioning on; idempotent."""
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
