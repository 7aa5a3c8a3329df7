"""Tenant buckets on S3 (or anything speaking its API, such as moto)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import botocore.exceptions

from services.infra.providers import TENANT_TAG, Conflict, Unavailable
from services.infra.providers.aws import error_code, faults_as_unavailable

log = logging.getLogger(__name__)

# How often DeleteBucket re-empties a bucket that is still being written to.
_EMPTY_ATTEMPTS = 3


class S3Storage:
    """`Storage` on S3: private, SSE-S3 encrypted, versioned buckets tagged with their tenant."""

    def __init__(self, client: Any) -> None:
        self._s3 = client

    def ensure_bucket(self, name: str, *, tenant_id: str, tags: Mapping[str, str]) -> None:
        with faults_as_unavailable(f"creating bucket {name}"):
            self._create(name)
            current = self._tags(name)
            # A bucket of ours without the tag is one whose creation was cut
            # short before tagging: it is this tenant's (the name says so).
            owner = current.get(TENANT_TAG)
            if owner is not None and owner != tenant_id:
                raise Conflict(f"bucket {name} already exists and belongs to another tenant")
            # Tag first, so that a crash from here on leaves a bucket that says whose it is.
            tag_set = [{"Key": k, "Value": v} for k, v in {**current, **tags}.items()]
            self._s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": tag_set})
            self._s3.put_public_access_block(
                Bucket=name,
                PublicAccessBlockConfiguration={
                    "BlockPublicAcls": True,
                    "IgnorePublicAcls": True,
                    "BlockPublicPolicy": True,
                    "RestrictPublicBuckets": True,
                },
            )
            self._s3.put_bucket_encryption(
                Bucket=name,
                ServerSideEncryptionConfiguration={
                    "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
                },
            )
            self._s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})

    def delete_bucket(
        self, name: str, *, tenant_id: str, progress: Callable[[], None] = lambda: None
    ) -> None:
        with faults_as_unavailable(f"deleting bucket {name}"):
            try:
                owner = self._tags(name).get(TENANT_TAG)
                if owner is not None and owner != tenant_id:
                    # Not ours (CreateBucket reported the conflict): this
                    # tenant has no bucket, which is what was asked for.
                    log.warning("bucket %s belongs to another tenant; leaving it in place", name)
                    return
                for _ in range(_EMPTY_ATTEMPTS):
                    self._empty(name, progress)
                    try:
                        self._s3.delete_bucket(Bucket=name)
                        return
                    except botocore.exceptions.ClientError as err:
                        if error_code(err) != "BucketNotEmpty":
                            raise
                raise Unavailable(f"bucket {name} kept receiving objects while being emptied")
            except botocore.exceptions.ClientError as err:
                if error_code(err) == "NoSuchBucket":
                    return
                raise

    def _create(self, name: str) -> None:
        request: dict[str, Any] = {"Bucket": name}
        region = self._s3.meta.region_name
        if region and region != "us-east-1":
            request["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            self._s3.create_bucket(**request)
        except botocore.exceptions.ClientError as err:
            code = error_code(err)
            if code == "BucketAlreadyOwnedByYou":
                return
            if code == "BucketAlreadyExists":
                raise Conflict(f"bucket name {name} is taken by another account") from err
            raise

    def _tags(self, name: str) -> dict[str, str]:
        try:
            tag_set = self._s3.get_bucket_tagging(Bucket=name)["TagSet"]
        except botocore.exceptions.ClientError as err:
            if error_code(err) == "NoSuchTagSet":
                return {}
            raise
        return {tag["Key"]: tag["Value"] for tag in tag_set}

    def _empty(self, name: str, progress: Callable[[], None]) -> None:
        """Deletes every object version, delete marker and unfinished upload, page by page."""
        for page in self._s3.get_paginator("list_object_versions").paginate(Bucket=name):
            batch = [
                {"Key": item["Key"], "VersionId": item["VersionId"]}
                for item in page.get("Versions", []) + page.get("DeleteMarkers", [])
            ]
            if not batch:
                continue
            # A listing page holds at most 1000 entries, DeleteObjects' limit.
            result = self._s3.delete_objects(Bucket=name, Delete={"Objects": batch, "Quiet": True})
            if result.get("Errors"):
                first = result["Errors"][0]
                raise Unavailable(
                    f"emptying bucket {name}: {first.get('Code')} on {len(result['Errors'])} objects"
                )
            progress()
        for page in self._s3.get_paginator("list_multipart_uploads").paginate(Bucket=name):
            for upload in page.get("Uploads", []):
                self._s3.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
