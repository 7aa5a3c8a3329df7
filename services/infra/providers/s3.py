"""Tenant buckets on S3 (or anything speaking its API, such as moto).

A bucket is a tenant's only if it carries that tenant's tag, or, untagged,
if the tenant's claim names it (below): any other is a `Conflict` to create
and is left alone by a delete, so that no tenant id can reach a bucket that
is not its own (the backup bucket, say, or one made by hand).

The tags go in the CreateBucket call itself (CreateBucketConfiguration.Tags),
so on AWS a bucket is tagged from birth. S3-compatible stores may ignore them
(moto 5.2.5 parses only LocationConstraint), so they are put again at once
with PutBucketTagging. For a worker that dies between the two, a claim
`claims/buckets/<name>` naming the tenant is first written, never
overwritten, to the platform bucket (the IaC state bucket, whose name no
tenant bucket can take): with it the tenant's next create adopts the untagged
bucket and its delete removes it. The claim goes once the bucket is tagged or
gone.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

import botocore.exceptions

from libs import buckets
from services.infra.providers import TENANT_TAG, Conflict, Unavailable
from services.infra.providers.aws import error_code, faults_as_unavailable

log = logging.getLogger(__name__)

# How often DeleteBucket re-empties a bucket that is still being written to.
_EMPTY_ATTEMPTS = 3
# Where a bucket's claim lives in the platform bucket.
CLAIM_PREFIX = "claims/buckets/"
_NO_OBJECT = ("NoSuchKey", "NoSuchBucket", "404", "NotFound")


class ClaimsBucket(Protocol):
    """The platform bucket that holds the claims (`iac.S3State` is one)."""

    @property
    def bucket(self) -> str: ...

    def ensure_bucket(self) -> None:
        """Creates the bucket if missing."""
        ...


class S3Storage:
    """`Storage` on S3: private, SSE-S3 encrypted, versioned buckets tagged with their tenant.

    The claims are read and written with `client` too (boto3 follows a
    bucket's region when it differs from the client's).
    """

    def __init__(self, client: Any, *, claims: ClaimsBucket) -> None:
        self._s3 = client
        self._claims = claims

    def ensure_bucket(self, name: str, *, tenant_id: str, tags: Mapping[str, str]) -> None:
        with faults_as_unavailable(f"creating bucket {name}"):
            current = self._tags(name)
            claim: str | None = None
            if current is None:
                claim = self._claim(name, tenant_id)
                claimed = self._create(name, tags)
                if not claimed:
                    # Made meanwhile by someone else in this account: the claim holds nothing.
                    self._release(name, tenant_id, claim)
                    current = self._tags(name) or {}
                else:
                    current = {}  # made just now: what it carries is what is put below
            else:
                # Untagged: ours only if an attempt of this tenant claimed it and was cut short.
                claimed = current.get(TENANT_TAG) is None and self._claimant(name)[0] == tenant_id
            owner = current.get(TENANT_TAG)
            if owner is None and not claimed:
                raise Conflict(
                    f"bucket {name} already exists and is not tenant {tenant_id}'s (no tenant tag)"
                )
            if owner is not None and owner != tenant_id:
                raise Conflict(f"bucket {name} already exists and belongs to another tenant")
            # Tag first: from then on the bucket itself says whose it is, and the claim can go.
            tag_set = [{"Key": k, "Value": v} for k, v in {**current, **tags}.items()]
            self._s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": tag_set})
            self._release(name, tenant_id, claim)
            buckets.secure(self._s3, name)

    def delete_bucket(
        self, name: str, *, tenant_id: str, progress: Callable[[], None] = lambda: None
    ) -> None:
        with faults_as_unavailable(f"deleting bucket {name}"):
            current = self._tags(name)
            if current is not None:
                owner = current.get(TENANT_TAG)
                # Untagged with this tenant's claim: the undo of a create cut short before tagging.
                if owner == tenant_id or (owner is None and self._claimant(name)[0] == tenant_id):
                    self._delete(name, progress)
                else:
                    # Untagged or another tenant's (CreateBucket reported the
                    # conflict): this tenant has no bucket, which is what was asked for.
                    log.warning("bucket %s is not tenant %s's; leaving it in place", name, tenant_id)
            # Last: should this attempt die first, its retry still knows the bucket is ours.
            self._release(name, tenant_id)

    def _delete(self, name: str, progress: Callable[[], None]) -> None:
        try:
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
            if error_code(err) != "NoSuchBucket":
                raise

    def _create(self, name: str, tags: Mapping[str, str]) -> bool:
        """Creates the bucket, tagged where the store honours tags at creation.

        True if this call made it; False if it was there already, made
        meanwhile by someone else in this account (outside us-east-1, where
        S3 says so).
        """
        configuration: dict[str, Any] = {"Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        region = self._s3.meta.region_name
        if region and region != "us-east-1":
            configuration["LocationConstraint"] = region
        try:
            self._s3.create_bucket(Bucket=name, CreateBucketConfiguration=configuration)
        except botocore.exceptions.ClientError as err:
            code = error_code(err)
            if code == "BucketAlreadyOwnedByYou":
                return False
            if code == "BucketAlreadyExists":
                raise Conflict(f"bucket name {name} is taken by another account") from err
            raise
        return True

    def _claim(self, name: str, tenant_id: str) -> str | None:
        """Claims `name` for the tenant before it is created; raises `Conflict` if another holds it.

        The put is conditional, so no claim is ever overwritten; finding the
        tenant's own is a retry, and fine. Returns the version written (None
        when the claim was there already).
        """
        self._claims.ensure_bucket()
        body = json.dumps({"tenant_id": tenant_id, "claimed_at": datetime.now(UTC).isoformat()})
        for _ in range(3):
            try:
                written = self._s3.put_object(
                    Bucket=self._claims.bucket,
                    Key=CLAIM_PREFIX + name,
                    Body=body.encode(),
                    IfNoneMatch="*",
                    ServerSideEncryption="AES256",
                    ContentType="application/json",
                )
                return str(written["VersionId"]) if written.get("VersionId") else None
            except botocore.exceptions.ClientError as err:
                if error_code(err) == "ConditionalRequestConflict":  # a concurrent put: look again
                    continue
                if error_code(err) != "PreconditionFailed":
                    raise
            holder = self._claimant(name)[0]
            if holder == tenant_id:
                return None
            if holder is not None:
                raise Conflict(f"bucket name {name} is claimed by another tenant")
            # Released between the put and the read: try again.
        raise Unavailable(f"the claim of bucket {name} kept changing")

    def _claimant(self, name: str) -> tuple[str | None, str | None]:
        """Who claims `name` and the claim's version; (None, None) without a claim.

        An unreadable claim is nobody's: it adopts nothing and is never removed.
        """
        try:
            found = self._s3.get_object(Bucket=self._claims.bucket, Key=CLAIM_PREFIX + name)
        except botocore.exceptions.ClientError as err:
            if error_code(err) in _NO_OBJECT:
                return None, None
            raise
        try:
            tenant = json.loads(found["Body"].read()).get("tenant_id")
        except (ValueError, AttributeError):
            tenant = None
        return (tenant if isinstance(tenant, str) else "?"), found.get("VersionId")

    def _release(self, name: str, tenant_id: str, version: str | None = None) -> None:
        """Deletes the tenant's claim of `name`, if it has one; another tenant's stays.

        `version`: the one this attempt wrote, which is the tenant's (no read needed).
        """
        if version is None:
            holder, version = self._claimant(name)
            if holder != tenant_id:
                return
        key = CLAIM_PREFIX + name
        # That version itself: the bucket is versioned, and a delete marker would stay behind.
        if version and version != "null":
            self._s3.delete_object(Bucket=self._claims.bucket, Key=key, VersionId=version)
        else:
            self._s3.delete_object(Bucket=self._claims.bucket, Key=key)

    def _tags(self, name: str) -> dict[str, str] | None:
        """The bucket's tags ({} for none), or None if there is no such bucket."""
        try:
            tag_set = self._s3.get_bucket_tagging(Bucket=name)["TagSet"]
        except botocore.exceptions.ClientError as err:
            code = error_code(err)
            if code == "NoSuchTagSet":
                return {}
            if code == "NoSuchBucket":
                return None
            if code == "AccessDenied":
                raise Conflict(f"bucket {name} cannot be read: it belongs to another account") from err
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
