"""The backup location: an S3 bucket that outlives the tenants it holds.

The tenant-data and identity workers write a tenant's backup here before
deprovisioning removes anything. The tenant's own bucket cannot be the place:
it is deleted with the tenant. Objects are keyed
`tenants/{tenant_id}/{backup_id}/{file}`, so a retried activity overwrites its
own object and never writes a second one.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import tempfile
from dataclasses import dataclass
from typing import IO, Any

import botocore.exceptions

from libs import aws, buckets, config, namespace
from libs.aws import error_code, faults_as_unavailable
from tenantry.tenant.v1 import tenant_pb2

log = logging.getLogger(__name__)

# Backups are kept this long, then S3 expires them (a lifecycle rule on the bucket).
DEFAULT_RETENTION_DAYS = 90


@dataclass(frozen=True)
class BackupSettings:
    bucket: str
    retention_days: int

    @classmethod
    def from_env(cls) -> BackupSettings:
        """TENANTRY_BACKUP_BUCKET and the retention; a bucket name some tenant's
        bucket could have is a ConfigError (see `libs.namespace`)."""
        return cls(
            bucket=namespace.backup_bucket(),
            retention_days=config.integer("TENANTRY_BACKUP_RETENTION_DAYS", DEFAULT_RETENTION_DAYS),
        )


class BackupStore:
    """Writes backup objects; the endpoint and credentials come from the AWS variables."""

    def __init__(self, settings: BackupSettings, client: Any | None = None) -> None:
        self.settings = settings
        self._s3 = client or aws.client("s3", read_timeout=30)
        self._bucket_ready = False

    async def ensure_bucket(self) -> None:
        """Creates the bucket if missing: private, encrypted, versioned, expiring.
        Uploads call it on first use."""
        await asyncio.to_thread(self._ensure_bucket)

    def _ensure_bucket(self) -> None:
        if self._bucket_ready:
            return
        bucket = self.settings.bucket
        with faults_as_unavailable(f"backup bucket {bucket}"):
            try:
                self._s3.head_bucket(Bucket=bucket)
                self._bucket_ready = True
                return
            except botocore.exceptions.ClientError as err:
                if error_code(err) not in ("404", "NoSuchBucket", "NotFound"):
                    raise
            try:
                self._s3.create_bucket(Bucket=bucket)
            except botocore.exceptions.ClientError as err:
                if error_code(err) != "BucketAlreadyOwnedByYou":
                    raise
            buckets.secure(self._s3, bucket)
            self._s3.put_bucket_lifecycle_configuration(
                Bucket=bucket,
                LifecycleConfiguration={
                    "Rules": [
                        {
                            "ID": "expire-backups",
                            "Status": "Enabled",
                            "Filter": {"Prefix": "tenants/"},
                            "Expiration": {"Days": self.settings.retention_days},
                            "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
                        }
                    ]
                },
            )
        self._bucket_ready = True
        log.info("backup bucket %s created", bucket)

    def key(self, tenant_id: str, backup_id: str, file: str) -> str:
        # A run id is a UUID; keep the key free of anything else a caller might pass.
        safe_id = "".join(c for c in backup_id if c.isalnum() or c in "-_")
        if not safe_id:
            raise ValueError("backup_id must contain letters or digits")
        return f"tenants/{tenant_id}/{safe_id}/{file}"

    async def put_file(
        self, kind: str, key: str, body: IO[bytes], *, content_type: str
    ) -> tenant_pb2.BackupObject:
        """Uploads `body` (a seekable file, streamed in parts) and describes it."""
        return await asyncio.to_thread(self._put_file, kind, key, body, content_type)

    async def put_bytes(
        self, kind: str, key: str, data: bytes, *, content_type: str
    ) -> tenant_pb2.BackupObject:
        with tempfile.TemporaryFile() as body:
            body.write(data)
            return await self.put_file(kind, key, body, content_type=content_type)

    def _put_file(self, kind: str, key: str, body: IO[bytes], content_type: str) -> tenant_pb2.BackupObject:
        digest = hashlib.sha256()
        body.seek(0)
        for chunk in iter(lambda: body.read(1 << 20), b""):
            digest.update(chunk)
        size = body.tell()
        body.seek(0)
        # Made on first use, so a worker starts (and serves its other
        # activities) while S3 is briefly away.
        self._ensure_bucket()
        with faults_as_unavailable(f"backup upload {key}"):
            self._s3.upload_fileobj(
                body,
                self.settings.bucket,
                key,
                ExtraArgs={
                    "ContentType": content_type,
                    "ServerSideEncryption": "AES256",
                    "Metadata": {"sha256": digest.hexdigest()},
                },
            )
        return tenant_pb2.BackupObject(
            kind=kind, uri=f"s3://{self.settings.bucket}/{key}", size_bytes=size, sha256=digest.hexdigest()
        )
