"""Tenant isolation in the infrastructure worker, against a real moto server (S3, Route53).

No tenant id or domain reaches a bucket or DNS record that is not the
tenant's: reserved ids are refused, untagged or foreign buckets and owner-less
records are conflicts left exactly as they were, and inside the managed zone a
tenant holds only `<id>.<zone>` and names under it.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import boto3
import botocore.exceptions
import pytest
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, CancelledError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from temporalio.workflow import ActivityCancellationType

from libs import contracts, lifecycle
from libs.backup import BackupSettings, BackupStore
from libs.config import ConfigError
from orchestrator import plan
from services.infra import providers, worker
from services.infra.activities import InfrastructureActivities
from services.infra.providers import iac
from services.infra.providers import s3 as s3_adapter
from tenantry.infra.v1 import infra_pb2
from tests.integration.test_infra import (
    TaggingFailsOnce,
    claim_of,
    cname_of,
    create,
    fails_with,
    run,
    tags_of,
    with_storage_over,
    zone_id_of,
    zone_records,
)

CREATE_BUCKET = contracts.INFRASTRUCTURE.rpc("CreateBucket")
DELETE_BUCKET = contracts.INFRASTRUCTURE.rpc("DeleteBucket")


@pytest.fixture
def tenant_id() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def no_tags(s3: Any, bucket: str) -> bool:
    try:
        s3.get_bucket_tagging(Bucket=bucket)
    except botocore.exceptions.ClientError as err:
        return err.response["Error"]["Code"] == "NoSuchTagSet"
    return False


def bucket_state(s3: Any, bucket: str) -> dict[str, Any]:
    """What a conflict must leave as it was: objects (with versions), tags, versioning."""
    versions = s3.list_object_versions(Bucket=bucket)
    return {
        "objects": sorted((v["Key"], v["VersionId"]) for v in versions.get("Versions", [])),
        "tags": None if no_tags(s3, bucket) else tags_of(s3, bucket),
        "versioning": s3.get_bucket_versioning(Bucket=bucket).get("Status"),
    }


def write_records(route53: Any, zone: str, changes: list[tuple[str, str, str]]) -> None:
    """CREATEs (name, type, value) record sets directly, as someone other than Tenantry."""
    route53.change_resource_record_sets(
        HostedZoneId=zone_id_of(route53, zone),
        ChangeBatch={
            "Changes": [
                {
                    "Action": "CREATE",
                    "ResourceRecordSet": {
                        "Name": name,
                        "Type": kind,
                        "TTL": 300,
                        "ResourceRecords": [{"Value": value}],
                    },
                }
                for name, kind, value in changes
            ]
        },
    )


def tenant_records(route53: Any, zone: str, label: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {k: v for k, v in zone_records(route53, zone).items() if label in k[0]}


# --- reserved tenant ids -----------------------------------------------------


def test_every_reserved_id_is_refused_by_the_infrastructure_activities(
    infra: InfrastructureActivities,
) -> None:
    for reserved in sorted(lifecycle.RESERVED_TENANT_IDS):
        error = fails_with("InvalidArgument", infra.create_bucket, create(reserved))
        assert error.non_retryable and "reserved" in str(error)
    fails_with("InvalidArgument", infra.delete_bucket, infra_pb2.DeleteBucketRequest(tenant_id="backups"))
    fails_with(
        "InvalidArgument", infra.upsert_dns_records, infra_pb2.UpsertDnsRecordsRequest(tenant_id="www")
    )


async def test_tenant_backups_cannot_reach_the_backup_bucket(
    infra: InfrastructureActivities, settings: providers.InfraSettings, s3: Any
) -> None:
    # The review's attack: tenant `backups` would be given `tenantry-backups`, the backup bucket.
    store = BackupStore(BackupSettings.from_env())
    assert store.settings.bucket == f"{settings.bucket_prefix}-backups"
    backup = await store.put_bytes(
        "schema", store.key("victim-co", "run-1", "schema.sql.gz"), b"dump", content_type="application/gzip"
    )
    before = bucket_state(s3, store.settings.bucket)

    fails_with("InvalidArgument", infra.create_bucket, create("backups"))
    fails_with("InvalidArgument", infra.delete_bucket, infra_pb2.DeleteBucketRequest(tenant_id="backups"))

    assert bucket_state(s3, store.settings.bucket) == before
    key = backup.uri.removeprefix(f"s3://{store.settings.bucket}/")
    assert s3.get_object(Bucket=store.settings.bucket, Key=key)["Body"].read() == b"dump"


# --- platform names at worker start ------------------------------------------


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        # The backup bucket is a tenant's bucket name under the prefix.
        ({"TENANTRY_BACKUP_BUCKET": "tenantry-acme"}, "TENANTRY_BACKUP_BUCKET"),
        ({"TENANTRY_BUCKET_PREFIX": "corp", "TENANTRY_BACKUP_BUCKET": "corp-data"}, "TENANTRY_BUCKET_PREFIX"),
        # The application's host name lies in a tenant's subtree of the zone.
        ({"TENANTRY_APP_HOSTNAME": "shop.tenants.tenantry.test"}, "TENANTRY_APP_HOSTNAME"),
        ({"TENANTRY_APP_HOSTNAME": "www.acme.tenants.tenantry.test"}, "TENANTRY_DNS_ZONE"),
    ],
)
async def test_infra_worker_refuses_platform_names_a_tenant_could_produce(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], named: str
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")  # never reached
    with pytest.raises(ConfigError, match=named):
        await worker.run()


def test_platform_names_outside_every_tenant_namespace_are_accepted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("TENANTRY_IAC_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("TENANTRY_BACKUP_BUCKET", "tenantry-backups")  # `backups` is reserved
    monkeypatch.setenv("TENANTRY_APP_HOSTNAME", "app.tenants.tenantry.test")  # `app` is reserved
    settings = providers.InfraSettings.from_env()
    assert (settings.bucket_prefix, settings.app_hostname) == ("tenantry", "app.tenants.tenantry.test")


# --- buckets -----------------------------------------------------------------


def test_an_untagged_bucket_named_like_the_tenants_is_a_conflict_and_left_alone(
    infra: InfrastructureActivities, settings: providers.InfraSettings, s3: Any, tenant_id: str
) -> None:
    bucket = f"tenantry-{tenant_id}"
    s3.create_bucket(Bucket=bucket)  # someone else's, in the same account
    s3.put_object(Bucket=bucket, Key="theirs.txt", Body=b"not the tenant's")
    before = bucket_state(s3, bucket)

    error = fails_with("Conflict", infra.create_bucket, create(tenant_id))

    assert error.non_retryable and bucket in str(error)
    assert bucket_state(s3, bucket) == before
    assert no_tags(s3, bucket)
    with pytest.raises(botocore.exceptions.ClientError):
        s3.get_public_access_block(Bucket=bucket)  # nothing was applied to it
    # No claim either: one would make the tenant's delete take the bucket for its own.
    assert claim_of(s3, settings, bucket) is None
    # The compensation of that failed step deletes nothing either.
    run(infra.delete_bucket, infra_pb2.DeleteBucketRequest(tenant_id=tenant_id))
    assert bucket_state(s3, bucket) == before
    assert s3.get_object(Bucket=bucket, Key="theirs.txt")["Body"].read() == b"not the tenant's"


def test_a_bucket_tagged_for_another_tenant_is_a_conflict_and_left_alone(
    infra: InfrastructureActivities, s3: Any, tenant_id: str
) -> None:
    bucket = f"tenantry-{tenant_id}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_tagging(
        Bucket=bucket, Tagging={"TagSet": [{"Key": providers.TENANT_TAG, "Value": "someone-else"}]}
    )
    s3.put_object(Bucket=bucket, Key="theirs.txt", Body=b"theirs")
    before = bucket_state(s3, bucket)

    fails_with("Conflict", infra.create_bucket, create(tenant_id))
    run(infra.delete_bucket, infra_pb2.DeleteBucketRequest(tenant_id=tenant_id))

    assert bucket_state(s3, bucket) == before
    assert before["tags"] == {providers.TENANT_TAG: "someone-else"}


async def test_a_backup_location_named_like_a_tenants_bucket_is_never_adopted_or_emptied(
    infra: InfrastructureActivities, s3: Any, tenant_id: str
) -> None:
    # A backup store configured (before the start-up check) inside the tenant namespace.
    store = BackupStore(BackupSettings(bucket=f"tenantry-{tenant_id}", retention_days=1))
    await store.put_bytes(
        "identity", store.key("other-co", "run-1", "identity.json"), b"{}", content_type="x"
    )
    before = bucket_state(s3, store.settings.bucket)
    lifecycle_rules = s3.get_bucket_lifecycle_configuration(Bucket=store.settings.bucket)["Rules"]

    fails_with("Conflict", infra.create_bucket, create(tenant_id))
    run(infra.delete_bucket, infra_pb2.DeleteBucketRequest(tenant_id=tenant_id))

    assert bucket_state(s3, store.settings.bucket) == before
    assert s3.get_bucket_lifecycle_configuration(Bucket=store.settings.bucket)["Rules"] == lifecycle_rules


class _CreateResponseLost:
    """The real S3 client, whose first CreateBucket makes the bucket and then fails as if
    the worker had died before hearing back; it notes the claim as CreateBucket found it."""

    def __init__(self, client: Any, settings: providers.InfraSettings) -> None:
        self._client = client
        self._settings = settings
        self.claim_at_create: dict[str, Any] | None = None
        self.failed = False

    def create_bucket(self, **kwargs: Any) -> Any:
        self.claim_at_create = claim_of(self._client, self._settings, kwargs["Bucket"])
        result = self._client.create_bucket(**kwargs)
        if not self.failed:
            self.failed = True
            raise botocore.exceptions.ReadTimeoutError(endpoint_url="s3 (injected)")
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def write_claim(built: providers.Providers, s3: Any, bucket: str, body: bytes) -> None:
    """Writes a claim of `bucket` directly, as another run (or a corruption) would leave it."""
    infrastructure = built.infrastructure
    assert isinstance(infrastructure, iac.TofuInfrastructure)
    infrastructure.state.ensure_bucket()
    s3.put_object(Bucket=infrastructure.state.bucket, Key=f"{s3_adapter.CLAIM_PREFIX}{bucket}", Body=body)


def raw_claim(s3: Any, settings: providers.InfraSettings, bucket: str) -> tuple[bytes, str]:
    found = s3.get_object(Bucket=settings.iac_state_bucket, Key=f"{s3_adapter.CLAIM_PREFIX}{bucket}")
    return found["Body"].read(), found["VersionId"]


def cut_short_create(
    built: providers.Providers, settings: providers.InfraSettings, s3: Any, tenant_id: str
) -> _CreateResponseLost:
    """A CreateBucket attempt of the tenant that dies right after CreateBucket."""
    client = _CreateResponseLost(boto3.client("s3"), settings)
    fails_with(
        "ProviderUnavailable", with_storage_over(client, built, settings).create_bucket, create(tenant_id)
    )
    assert client.failed
    return client


def test_the_claim_is_written_before_createbucket_and_outlives_a_create_cut_short(
    built: providers.Providers, settings: providers.InfraSettings, s3: Any, tenant_id: str
) -> None:
    bucket = f"tenantry-{tenant_id}"

    client = cut_short_create(built, settings, s3, tenant_id)

    # Durable in S3 before the bucket exists, so no moment has a bucket without a record of whose it is.
    assert client.claim_at_create is not None
    assert client.claim_at_create["tenant_id"] == tenant_id
    assert datetime.fromisoformat(client.claim_at_create["claimed_at"]).tzinfo is not None
    assert no_tags(s3, bucket)
    assert claim_of(s3, settings, bucket) == client.claim_at_create


def test_the_next_attempt_adopts_the_untagged_bucket_its_tenant_claimed(
    infra: InfrastructureActivities,
    built: providers.Providers,
    settings: providers.InfraSettings,
    s3: Any,
    tenant_id: str,
) -> None:
    bucket = f"tenantry-{tenant_id}"
    cut_short_create(built, settings, s3, tenant_id)

    response = run(infra.create_bucket, create(tenant_id))

    assert response.bucket == bucket
    assert tags_of(s3, bucket)[providers.TENANT_TAG] == tenant_id
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    # Tagged: the bucket says whose it is, the claim is gone.
    assert claim_of(s3, settings, bucket) is None


def test_deleting_a_create_cut_short_removes_the_untagged_bucket_and_its_claim(
    infra: InfrastructureActivities,
    built: providers.Providers,
    settings: providers.InfraSettings,
    s3: Any,
    tenant_id: str,
) -> None:
    # The undo of a provisioning step that failed or was cancelled after CreateBucket.
    bucket = f"tenantry-{tenant_id}"
    cut_short_create(built, settings, s3, tenant_id)

    run(infra.delete_bucket, infra_pb2.DeleteBucketRequest(tenant_id=tenant_id))

    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert claim_of(s3, settings, bucket) is None
    run(infra.delete_bucket, infra_pb2.DeleteBucketRequest(tenant_id=tenant_id))  # and again: nothing to do


def test_a_claim_left_before_createbucket_is_the_tenants_own_retry(
    infra: InfrastructureActivities,
    built: providers.Providers,
    settings: providers.InfraSettings,
    s3: Any,
    tenant_id: str,
) -> None:
    # An attempt that died between its claim and CreateBucket.
    bucket = f"tenantry-{tenant_id}"
    write_claim(built, s3, bucket, json.dumps({"tenant_id": tenant_id, "claimed_at": "earlier"}).encode())

    run(infra.create_bucket, create(tenant_id))

    assert tags_of(s3, bucket)[providers.TENANT_TAG] == tenant_id
    assert claim_of(s3, settings, bucket) is None


@pytest.mark.parametrize(
    "claim",
    [
        pytest.param('{"tenant_id": "someone-else", "claimed_at": "earlier"}', id="another tenant's"),
        pytest.param('{"tenant_id": "{tenant}"', id="unreadable"),
        pytest.param('["{tenant}"]', id="not a claim document"),
    ],
)
@pytest.mark.parametrize("bucket_exists", [False, True], ids=["no bucket", "untagged bucket"])
def test_a_claim_that_is_not_the_tenants_is_a_conflict_and_left_alone(
    infra: InfrastructureActivities,
    built: providers.Providers,
    settings: providers.InfraSettings,
    s3: Any,
    tenant_id: str,
    claim: str,
    bucket_exists: bool,
) -> None:
    bucket = f"tenantry-{tenant_id}"
    if bucket_exists:
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="theirs.txt", Body=b"not the tenant's")
    before = bucket_state(s3, bucket) if bucket_exists else None
    write_claim(built, s3, bucket, claim.replace("{tenant}", tenant_id).encode())
    claim_before = raw_claim(s3, settings, bucket)

    error = fails_with("Conflict", infra.create_bucket, create(tenant_id))
    run(infra.delete_bucket, infra_pb2.DeleteBucketRequest(tenant_id=tenant_id))

    assert error.non_retryable and bucket in str(error)
    assert raw_claim(s3, settings, bucket) == claim_before  # never overwritten, never deleted
    if bucket_exists:
        assert bucket_state(s3, bucket) == before
    else:
        assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


@workflow.defn(name="IsolationCreateBucket", sandboxed=False)
class CreateBucketStep:
    """The provisioning step alone, with the real step options."""

    @workflow.run
    async def run(self, request: infra_pb2.CreateBucketRequest) -> infra_pb2.CreateBucketResponse:
        return await workflow.execute_activity(
            CREATE_BUCKET.name,
            request,
            result_type=infra_pb2.CreateBucketResponse,
            start_to_close_timeout=plan.PROVISION_STEP.start_to_close,
            schedule_to_close_timeout=timedelta(seconds=60),
            retry_policy=plan.PROVISION_STEP.retry,
        )


@pytest.mark.parametrize("cut", ["response lost", "tagging failed"])
async def test_temporal_retries_a_create_cut_short_into_the_tenants_bucket(
    temporal_address: str,
    built: providers.Providers,
    settings: providers.InfraSettings,
    s3: Any,
    tenant_id: str,
    cut: str,
) -> None:
    # Attempt 1 creates the bucket and fails before tagging it (its heartbeat
    # thread beating all along); attempt 2 finds it untagged and adopts it
    # only because the claim in S3 says this tenant made it.
    flaky: _CreateResponseLost | TaggingFailsOnce = (
        _CreateResponseLost(boto3.client("s3"), settings)
        if cut == "response lost"
        else TaggingFailsOnce(boto3.client("s3"))
    )
    activities = with_storage_over(flaky, built, settings)
    queue = f"isolation-{uuid.uuid4()}"
    client = await Client.connect(temporal_address)
    with ThreadPoolExecutor(max_workers=2) as pool:
        response = await _run_create_bucket(client, queue, activities, pool, tenant_id)

    assert flaky.failed
    assert tags_of(s3, response.bucket)[providers.TENANT_TAG] == tenant_id
    assert claim_of(s3, settings, response.bucket) is None
    history = await client.get_workflow_handle(f"isolation-{tenant_id}").fetch_history()
    started = [e for e in history.events if e.HasField("activity_task_started_event_attributes")]
    assert started[-1].activity_task_started_event_attributes.attempt == 2


async def _run_create_bucket(
    client: Client, queue: str, activities: InfrastructureActivities, pool: ThreadPoolExecutor, tenant_id: str
) -> infra_pb2.CreateBucketResponse:
    async with Worker(
        client,
        task_queue=queue,
        workflows=[CreateBucketStep],
        activities=contracts.bind_activities(contracts.INFRASTRUCTURE, activities),
        activity_executor=pool,
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        return await client.execute_workflow(
            CreateBucketStep.run,
            create(tenant_id),
            id=f"isolation-{tenant_id}",
            task_queue=queue,
            execution_timeout=timedelta(seconds=60),
        )


class _TaggingWaitsForCancel:
    """The real S3 client, whose PutBucketTagging stops the activity as soon as it is cancelled."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.reached = threading.Event()
        self.tagged = False

    def put_bucket_tagging(self, **kwargs: Any) -> Any:
        self.reached.set()
        if activity.wait_for_cancelled_sync(timeout=20):
            raise CancelledError("cancelled before tagging")
        self.tagged = True
        return self._client.put_bucket_tagging(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


@workflow.defn(name="IsolationCancelCreateBucket", sandboxed=False)
class CancelCreateBucket:
    """CreateBucket, cancelled on a signal while it runs, then undone as provisioning undoes
    it (orchestrator/run.py: a step's undo is owed from its start)."""

    def __init__(self) -> None:
        self._cancel = False

    @workflow.signal
    def cancel(self) -> None:
        self._cancel = True

    @workflow.run
    async def run(self, tenant_id: str) -> str:
        step = workflow.start_activity(
            CREATE_BUCKET.name,
            create(tenant_id),
            result_type=infra_pb2.CreateBucketResponse,
            start_to_close_timeout=timedelta(seconds=30),
            heartbeat_timeout=timedelta(seconds=2),
            retry_policy=RetryPolicy(maximum_attempts=1),
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        await workflow.wait_condition(lambda: self._cancel)
        step.cancel()
        try:
            await step
            outcome = "completed"
        except ActivityError as err:
            if not isinstance(err.cause, CancelledError):
                raise
            outcome = "cancelled"
        await workflow.execute_activity(
            DELETE_BUCKET.name,
            infra_pb2.DeleteBucketRequest(tenant_id=tenant_id),
            result_type=infra_pb2.DeleteBucketResponse,
            start_to_close_timeout=timedelta(seconds=30),
        )
        return outcome


async def test_a_cancel_during_creation_leaves_no_bucket_behind(
    temporal_address: str,
    built: providers.Providers,
    settings: providers.InfraSettings,
    s3: Any,
    tenant_id: str,
) -> None:
    # Cancelled between CreateBucket and PutBucketTagging, the step stops
    # with an untagged bucket; the undo finds this tenant's claim and removes it.
    waiting = _TaggingWaitsForCancel(boto3.client("s3"))
    activities = with_storage_over(waiting, built, settings)
    queue = f"isolation-{uuid.uuid4()}"
    client = await Client.connect(temporal_address)
    with ThreadPoolExecutor(max_workers=2) as pool:
        async with Worker(
            client,
            task_queue=queue,
            workflows=[CancelCreateBucket],
            activities=contracts.bind_activities(contracts.INFRASTRUCTURE, activities),
            activity_executor=pool,
            workflow_runner=UnsandboxedWorkflowRunner(),
        ):
            handle = await client.start_workflow(
                CancelCreateBucket.run,
                tenant_id,
                id=f"isolation-cancel-{tenant_id}",
                task_queue=queue,
                execution_timeout=timedelta(seconds=60),
            )
            assert await asyncio.to_thread(waiting.reached.wait, 20)
            bucket = f"tenantry-{tenant_id}"
            assert no_tags(s3, bucket)  # the state the cancel interrupts
            await handle.signal(CancelCreateBucket.cancel)
            outcome = await handle.result()

    assert (outcome, waiting.tagged) == ("cancelled", False)
    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert claim_of(s3, settings, bucket) is None


# --- DNS ---------------------------------------------------------------------


def test_an_untagged_cname_of_the_tenants_name_is_a_conflict_and_left_alone(
    infra: InfrastructureActivities, settings: providers.InfraSettings, route53: Any, tenant_id: str
) -> None:
    # Same value as Tenantry would write, but no owner record: not this tenant's.
    name = f"{tenant_id}.{settings.dns_zone}"
    write_records(route53, settings.dns_zone, [(name, "CNAME", settings.app_hostname)])
    before = tenant_records(route53, settings.dns_zone, tenant_id)

    error = fails_with(
        "Conflict", infra.upsert_dns_records, infra_pb2.UpsertDnsRecordsRequest(tenant_id=tenant_id)
    )

    assert error.non_retryable and "no owner record" in str(error)
    assert tenant_records(route53, settings.dns_zone, tenant_id) == before
    run(infra.delete_dns_records, infra_pb2.DeleteDnsRecordsRequest(tenant_id=tenant_id))
    assert tenant_records(route53, settings.dns_zone, tenant_id) == before


def test_a_record_owned_by_another_tenant_is_a_conflict_and_left_alone(
    infra: InfrastructureActivities, settings: providers.InfraSettings, route53: Any, tenant_id: str
) -> None:
    # Written before the subtree rule, by the tenant `other`.
    name = f"shop.{tenant_id}.{settings.dns_zone}"
    write_records(
        route53,
        settings.dns_zone,
        [(name, "CNAME", settings.app_hostname), (f"_tenantry-owner.{name}", "TXT", '"tenant=other"')],
    )
    before = tenant_records(route53, settings.dns_zone, tenant_id)
    request = infra_pb2.UpsertDnsRecordsRequest(tenant_id=tenant_id, domains=[name])

    error = fails_with("Conflict", infra.upsert_dns_records, request)

    assert "belongs to another tenant" in str(error)
    assert tenant_records(route53, settings.dns_zone, tenant_id) == before
    delete = infra_pb2.DeleteDnsRecordsRequest(tenant_id=tenant_id, domains=[name])
    run(infra.delete_dns_records, delete)
    assert tenant_records(route53, settings.dns_zone, tenant_id) == before


@pytest.mark.parametrize(
    "domain",
    [
        "{victim}.{zone}",
        "x.{victim}.{zone}",
        "{Victim}.{zone}.",  # case and a final dot do not hide the name
        "{zone}",  # the zone's apex is no tenant's
        "www.{zone}",
        "x{victim}.{zone}",  # a label that merely ends like the victim's
    ],
)
def test_another_tenants_names_in_the_zone_are_refused(
    infra: InfrastructureActivities,
    settings: providers.InfraSettings,
    route53: Any,
    tenant_id: str,
    domain: str,
) -> None:
    victim = f"v-{uuid.uuid4().hex[:12]}"
    claimed = domain.format(victim=victim, Victim=victim.upper(), zone=settings.dns_zone)
    request = infra_pb2.UpsertDnsRecordsRequest(tenant_id=tenant_id, domains=[claimed])

    error = fails_with("InvalidArgument", infra.upsert_dns_records, request)

    assert error.non_retryable
    assert not tenant_records(route53, settings.dns_zone, tenant_id)  # nothing written, not even its own
    assert not tenant_records(route53, settings.dns_zone, victim)
    # The victim, provisioned later, gets its own name.
    run(infra.upsert_dns_records, infra_pb2.UpsertDnsRecordsRequest(tenant_id=victim))
    assert cname_of(zone_records(route53, settings.dns_zone), f"{victim}.{settings.dns_zone}") == (
        settings.app_hostname
    )
    # The refused step's compensation (same domains) succeeds and removes nothing of the victim's.
    run(infra.delete_dns_records, infra_pb2.DeleteDnsRecordsRequest(tenant_id=tenant_id, domains=[claimed]))
    assert (f"{victim}.{settings.dns_zone}", "CNAME") in zone_records(route53, settings.dns_zone)


def test_the_tenants_own_name_and_names_under_it_are_accepted(
    infra: InfrastructureActivities, settings: providers.InfraSettings, route53: Any, tenant_id: str
) -> None:
    zone = settings.dns_zone
    own, sub = f"{tenant_id}.{zone}", f"sub.{tenant_id}.{zone}"
    request = infra_pb2.UpsertDnsRecordsRequest(tenant_id=tenant_id, domains=[f"{own}.", f"Sub.{own}"])

    response = run(infra.upsert_dns_records, request)

    assert list(response.record_names) == [own, sub]
    records = zone_records(route53, zone)
    for name in (own, sub):
        assert cname_of(records, name) == settings.app_hostname
        assert records[(f"_tenantry-owner.{name}", "TXT")]["ResourceRecords"] == [
            {"Value": f'"tenant={tenant_id}"'}
        ]


def test_a_tenants_records_from_before_the_subtree_rule_are_still_deleted(
    infra: InfrastructureActivities, settings: providers.InfraSettings, route53: Any, tenant_id: str
) -> None:
    legacy = f"shop-{tenant_id}.{settings.dns_zone}"
    write_records(
        route53,
        settings.dns_zone,
        [
            (legacy, "CNAME", settings.app_hostname),
            (f"_tenantry-owner.{legacy}", "TXT", f'"tenant={tenant_id}"'),
        ],
    )
    # Another tenant naming it in a deletion removes nothing.
    other = f"o-{uuid.uuid4().hex[:12]}"
    run(infra.delete_dns_records, infra_pb2.DeleteDnsRecordsRequest(tenant_id=other, domains=[legacy]))
    assert (legacy, "CNAME") in zone_records(route53, settings.dns_zone)

    run(infra.delete_dns_records, infra_pb2.DeleteDnsRecordsRequest(tenant_id=tenant_id, domains=[legacy]))

    assert not tenant_records(route53, settings.dns_zone, tenant_id)
