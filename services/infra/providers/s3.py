"""Tenant buckets on S3 (or anything speaking its API, such as moto).

A bucket is a tenant's only if it carries that tenant's tag: one untagged or
tagged for another tenant is a `Conflict` to create and is left alone by a
delete, so that no tenant id can reach a bucket that is not its own (the
backup bucket, say, or one made by hand).

The tags go in the CreateBucket call itself (CreateBucketConfiguration.Tags),
so on AWS a bucket is tagged from birth. S3-compatible stores may ignore them
(moto 5.2.5 parses only LocationConstraint), so they are put again at once
with PutBucketTagging; for the moment between the two, the activity's
heartbeat records "created <name>" as soon as CreateBucket returns, and only
a later attempt of the same activity that finds that record adopts the
untagged bucket (see `_created_by_earlier_attempt`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import botocore.exceptions
from temporalio import activity
from temporalio.exceptions import CancelledError

from services.infra.providers import TENANT_TAG, Conflict, Unavailable
from services.infra.providers.aws import error_code, faults_as_unavailable

log = logging.getLogger(__name__)

# How often DeleteBucket re-empties a bucket that is still being written to.
_EMPTY_ATTEMPTS = 3
# The heartbeat detail of a CreateBucket attempt that has made its bucket.
CREATED_DETAIL = "created_bucket"


class S3Storage:
    """`Storage` on S3: private, SSE-S3 encrypted, versioned buckets tagged with their tenant."""

    def __init__(self, client: Any) -> None:
        self._s3 = client

    def ensure_bucket(self, name: str, *, tenant_id: str, tags: Mapping[str, str]) -> None:
        # Finished once begun, even when the run is cancelled meanwhile (see `_not_cut_short`).
        with _not_cut_short(name), faults_as_unavailable(f"creating bucket {name}"):
            current = self._tags(name)
            created = False
            if current is None:
                created = self._create(name, tags)
                current = self._tags(name) or {}
            owner = current.get(TENANT_TAG)
            if owner is None:
                # Untagged: ours only if this attempt or an earlier one of the
                # same activity made it and was cut short before tagging.
                if not (created or _created_by_earlier_attempt(name)):
                    raise Conflict(
                        f"bucket {name} already exists and is not tenant {tenant_id}'s (no tenant tag)"
                    )
                if not created:
                    _record_created(name)  # carried on, should this attempt be cut short too
            elif owner != tenant_id:
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
                current = self._tags(name)
                if current is None:
                    return
                if current.get(TENANT_TAG) != tenant_id:
                    # Untagged or another tenant's (CreateBucket reported the
                    # conflict): this tenant has no bucket, which is what was asked for.
                    log.warning("bucket %s is not tenant %s's; leaving it in place", name, tenant_id)
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

    def _create(self, name: str, tags: Mapping[str, str]) -> bool:
        """Creates the bucket, tagged where the store honours tags at creation.

        True if this call made it (it is recorded at once, see the module
        doc); False if it was there already, made meanwhile by someone else in
        this account (outside us-east-1, where S3 says so).
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
        _record_created(name)
        return True

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


def _created_by_earlier_attempt(name: str) -> bool:
    """Whether the previous attempt of this activity recorded that it created `name`.

    Temporal hands each attempt the last heartbeat details of the attempt
    before. Outside an activity there is no earlier attempt.
    """
    if not activity.in_activity():
        return False
    details = activity.info().heartbeat_details
    return any(isinstance(d, dict) and d.get(CREATED_DETAIL) == name for d in details)


def _record_created(name: str) -> None:
    """Records in the activity's heartbeat that this attempt made `name` (an
    attempt's first heartbeat is not throttled: it reaches the server at once)."""
    if activity.in_activity():
        activity.heartbeat({CREATED_DETAIL: name})


@contextmanager
def _not_cut_short(name: str) -> Iterator[None]:
    """Runs the block to its end even if the activity is cancelled meanwhile.

    Temporal raises a cancellation inside a threaded activity's thread once a
    heartbeat (`_record_created`) has let it in. Between CreateBucket and
    PutBucketTagging it would leave an untagged bucket that no delete may
    remove; and a step that stops on a cancel is not undone by the workflow
    (only a completed one is). So the cancel is held back and dropped: the
    few calls here finish, the step completes, and its undo deletes the bucket.
    """
    if not activity.in_activity():
        yield
        return
    failed: BaseException | None = None
    try:
        with activity.shield_thread_cancel_exception():
            try:
                yield
            except BaseException as err:  # the block's own outcome wins over the cancel
                failed = err
    except CancelledError:
        if failed is None:
            log.info("bucket %s: finished despite a cancel, so that its undo can remove it", name)
    if failed is not None:
        raise failed
