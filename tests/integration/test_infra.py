"""The infrastructure activities against a real moto server (S3, Route53) over HTTP."""

from __future__ import annotations

import dataclasses
import json
import uuid
from typing import Any

import boto3
import botocore.exceptions
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from libs.config import ConfigError
from libs.contracts import bind_activities
from services.infra import providers, worker
from services.infra.activities import InfrastructureActivities
from services.infra.providers import iac
from services.infra.providers import s3 as s3_adapter
from tenantry.infra.v1 import infra_pb2
from tenantry.tenant.v1 import tenant_pb2


@pytest.fixture
def tenant_id() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def run(fn: Any, request: Any) -> Any:
    return ActivityEnvironment().run(fn, request)


def fails_with(error_type: str, fn: Any, request: Any) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        run(fn, request)
    assert caught.value.type == error_type, caught.value
    return caught.value


def tags_of(s3: Any, bucket: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=bucket)["TagSet"]}


def create(tenant_id: str) -> infra_pb2.CreateBucketRequest:
    return infra_pb2.CreateBucketRequest(tenant_id=tenant_id, plan_tier=tenant_pb2.PLAN_TIER_BRIDGE)


class TaggingFailsOnce:
    """The real S3 client, whose first PutBucketTagging fails as a lost connection would."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.failed = False

    def put_bucket_tagging(self, **kwargs: Any) -> Any:
        if not self.failed:
            self.failed = True
            raise botocore.exceptions.EndpointConnectionError(endpoint_url="s3 (injected)")
        return self._client.put_bucket_tagging(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def with_storage_over(
    client: Any, built: providers.Providers, settings: providers.InfraSettings
) -> InfrastructureActivities:
    """The activities with the worker's S3 adapter (and its claims bucket) over another client."""
    infrastructure = built.infrastructure
    assert isinstance(infrastructure, iac.TofuInfrastructure)
    storage = s3_adapter.S3Storage(client, claims=infrastructure.state)
    return InfrastructureActivities(dataclasses.replace(built, storage=storage), settings)


def claim_of(s3: Any, settings: providers.InfraSettings, bucket: str) -> dict[str, Any] | None:
    """The claim of `bucket` in the claims bucket (the IaC state's), None without one."""
    try:
        found = s3.get_object(Bucket=settings.iac_state_bucket, Key=f"{s3_adapter.CLAIM_PREFIX}{bucket}")
    except botocore.exceptions.ClientError as err:
        assert err.response["Error"]["Code"] in ("NoSuchKey", "NoSuchBucket"), err
        return None
    claim: dict[str, Any] = json.loads(found["Body"].read())
    return claim


# --- storage ---------------------------------------------------------------


def test_create_bucket_is_private_encrypted_versioned_and_tagged(
    infra: InfrastructureActivities, settings: providers.InfraSettings, s3: Any, tenant_id: str
) -> None:
    response = run(infra.create_bucket, create(tenant_id))

    assert response.bucket == f"tenantry-{tenant_id}"
    encryption = s3.get_bucket_encryption(Bucket=response.bucket)["ServerSideEncryptionConfiguration"]
    assert encryption["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    block = s3.get_public_access_block(Bucket=response.bucket)["PublicAccessBlockConfiguration"]
    assert block == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }
    assert s3.get_bucket_versioning(Bucket=response.bucket)["Status"] == "Enabled"
    assert tags_of(s3, response.bucket) == {
        "tenantry:tenant-id": tenant_id,
        "tenantry:plan-tier": "PLAN_TIER_BRIDGE",
    }
    # The claim made before CreateBucket went once the bucket was tagged.
    assert claim_of(s3, settings, response.bucket) is None


def test_create_bucket_twice_gives_one_bucket(
    infra: InfrastructureActivities, s3: Any, tenant_id: str
) -> None:
    first = run(infra.create_bucket, create(tenant_id))
    s3.put_object(Bucket=first.bucket, Key="kept.txt", Body=b"still here")
    second = run(infra.create_bucket, create(tenant_id))

    assert second == first
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert names.count(first.bucket) == 1
    assert s3.get_object(Bucket=first.bucket, Key="kept.txt")["Body"].read() == b"still here"


def test_create_bucket_reapplies_settings_to_a_half_made_bucket(
    infra: InfrastructureActivities,
    built: providers.Providers,
    settings: providers.InfraSettings,
    s3: Any,
    tenant_id: str,
) -> None:
    # An attempt cut short after CreateBucket leaves a bare, untagged bucket
    # and the tenant's claim of it (see test_isolation_infra.py).
    bucket = f"tenantry-{tenant_id}"
    cut_short = with_storage_over(TaggingFailsOnce(boto3.client("s3")), built, settings)
    fails_with("ProviderUnavailable", cut_short.create_bucket, create(tenant_id))
    assert (claim_of(s3, settings, bucket) or {}).get("tenant_id") == tenant_id

    response = run(infra.create_bucket, create(tenant_id))

    assert response.bucket == bucket
    assert tags_of(s3, bucket)["tenantry:tenant-id"] == tenant_id
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    assert s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]["BlockPublicAcls"]
    assert claim_of(s3, settings, bucket) is None


def test_bucket_of_another_tenant_is_a_conflict_and_is_left_alone(
    infra: InfrastructureActivities, s3: Any, tenant_id: str
) -> None:
    bucket = f"tenantry-{tenant_id}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_tagging(
        Bucket=bucket, Tagging={"TagSet": [{"Key": "tenantry:tenant-id", "Value": "someone-else"}]}
    )

    error = fails_with("Conflict", infra.create_bucket, create(tenant_id))

    assert error.non_retryable
    assert bucket in str(error)
    assert tags_of(s3, bucket) == {"tenantry:tenant-id": "someone-else"}
    # Deleting this tenant's bucket must not delete someone else's.
    run(infra.delete_bucket, infra_pb2.DeleteBucketRequest(tenant_id=tenant_id))
    s3.head_bucket(Bucket=bucket)


def test_delete_bucket_removes_every_version_and_the_bucket(
    infra: InfrastructureActivities, s3: Any, tenant_id: str
) -> None:
    bucket = run(infra.create_bucket, create(tenant_id)).bucket
    for i in range(5):
        for version in range(3):
            s3.put_object(Bucket=bucket, Key=f"dir/object-{i}", Body=f"v{version}".encode())
    s3.delete_object(Bucket=bucket, Key="dir/object-0")  # leaves a delete marker
    s3.create_multipart_upload(Bucket=bucket, Key="unfinished")
    listing = s3.list_object_versions(Bucket=bucket)
    assert len(listing["Versions"]) == 15 and len(listing["DeleteMarkers"]) == 1

    run(infra.delete_bucket, infra_pb2.DeleteBucketRequest(tenant_id=tenant_id))

    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    with pytest.raises(s3.exceptions.ClientError) as missing:
        s3.head_bucket(Bucket=bucket)
    assert missing.value.response["Error"]["Code"] == "404"


def test_delete_bucket_twice_succeeds(infra: InfrastructureActivities, s3: Any, tenant_id: str) -> None:
    bucket = run(infra.create_bucket, create(tenant_id)).bucket
    s3.put_object(Bucket=bucket, Key="a", Body=b"a")

    run(infra.delete_bucket, infra_pb2.DeleteBucketRequest(tenant_id=tenant_id))
    run(infra.delete_bucket, infra_pb2.DeleteBucketRequest(tenant_id=tenant_id))

    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


@pytest.mark.parametrize("bad", ["", "A-tenant", "1abc", "ab", "ends-with-", "x" * 40, "a_b_c"])
def test_invalid_tenant_id_is_invalid_argument(infra: InfrastructureActivities, bad: str) -> None:
    error = fails_with("InvalidArgument", infra.create_bucket, create(bad))
    assert error.non_retryable
    fails_with("InvalidArgument", infra.delete_bucket, infra_pb2.DeleteBucketRequest(tenant_id=bad))
    fails_with("InvalidArgument", infra.upsert_dns_records, infra_pb2.UpsertDnsRecordsRequest(tenant_id=bad))


def test_unspecified_plan_tier_is_invalid_argument(infra: InfrastructureActivities, tenant_id: str) -> None:
    request = infra_pb2.CreateBucketRequest(tenant_id=tenant_id)
    assert fails_with("InvalidArgument", infra.create_bucket, request).non_retryable


# --- DNS -------------------------------------------------------------------


def zone_records(route53: Any, zone: str) -> dict[tuple[str, str], dict[str, Any]]:
    zone_id = next(
        z["Id"]
        for z in route53.list_hosted_zones_by_name(DNSName=zone)["HostedZones"]
        if z["Name"] == f"{zone}."
    )
    records: dict[tuple[str, str], dict[str, Any]] = {}
    for page in route53.get_paginator("list_resource_record_sets").paginate(HostedZoneId=zone_id):
        for rrset in page["ResourceRecordSets"]:
            records[(rrset["Name"].rstrip("."), rrset["Type"])] = rrset
    return records


def cname_of(records: dict[tuple[str, str], dict[str, Any]], name: str) -> str:
    values = [r["Value"].rstrip(".") for r in records[(name, "CNAME")]["ResourceRecords"]]
    assert len(values) == 1
    return values[0]


def zone_id_of(route53: Any, zone: str) -> str:
    found = route53.list_hosted_zones_by_name(DNSName=zone)["HostedZones"]
    return min(z["Id"] for z in found if z["Name"] == f"{zone}.")


def test_upsert_points_tenant_and_in_zone_domains_at_the_app(
    infra: InfrastructureActivities, settings: providers.InfraSettings, route53: Any, tenant_id: str
) -> None:
    zone = settings.dns_zone
    in_zone = f"Shop.{tenant_id}.{zone}."
    outside = f"www.{tenant_id}.example.com"

    response = run(
        infra.upsert_dns_records,
        infra_pb2.UpsertDnsRecordsRequest(tenant_id=tenant_id, domains=[in_zone, outside]),
    )

    assert list(response.record_names) == [f"{tenant_id}.{zone}", f"shop.{tenant_id}.{zone}"]
    records = zone_records(route53, zone)
    for name in response.record_names:
        assert cname_of(records, name) == "app.tenantry.test"
        assert records[(name, "CNAME")]["TTL"] == 300
    assert not [key for key in records if outside in key[0]]


def test_upsert_twice_changes_nothing(
    infra: InfrastructureActivities, settings: providers.InfraSettings, route53: Any, tenant_id: str
) -> None:
    request = infra_pb2.UpsertDnsRecordsRequest(
        tenant_id=tenant_id, domains=[f"a.{tenant_id}.{settings.dns_zone}"]
    )
    first = run(infra.upsert_dns_records, request)
    before = {k: v for k, v in zone_records(route53, settings.dns_zone).items() if tenant_id in k[0]}

    second = run(infra.upsert_dns_records, request)

    assert second == first
    after = {k: v for k, v in zone_records(route53, settings.dns_zone).items() if tenant_id in k[0]}
    assert after == before
    assert len([k for k in after if k[1] == "CNAME"]) == 2


def test_existing_record_pointing_elsewhere_is_a_conflict(
    infra: InfrastructureActivities, settings: providers.InfraSettings, route53: Any, tenant_id: str
) -> None:
    name = f"{tenant_id}.{settings.dns_zone}"
    route53.change_resource_record_sets(
        HostedZoneId=zone_id_of(route53, settings.dns_zone),
        ChangeBatch={
            "Changes": [
                {
                    "Action": "CREATE",
                    "ResourceRecordSet": {
                        "Name": name,
                        "Type": "CNAME",
                        "TTL": 60,
                        "ResourceRecords": [{"Value": "elsewhere.example.com"}],
                    },
                }
            ]
        },
    )

    error = fails_with(
        "Conflict", infra.upsert_dns_records, infra_pb2.UpsertDnsRecordsRequest(tenant_id=tenant_id)
    )

    assert error.non_retryable
    assert f"dns record {name} already exists and points elsewhere" in str(error)
    assert cname_of(zone_records(route53, settings.dns_zone), name) == "elsewhere.example.com"
    # Not ours, so deleting the tenant's records leaves it.
    run(infra.delete_dns_records, infra_pb2.DeleteDnsRecordsRequest(tenant_id=tenant_id))
    assert cname_of(zone_records(route53, settings.dns_zone), name) == "elsewhere.example.com"


def test_a_domain_in_another_tenants_subtree_is_refused_and_survives_its_delete(
    infra: InfrastructureActivities, settings: providers.InfraSettings, route53: Any, tenant_id: str
) -> None:
    other = f"o-{uuid.uuid4().hex[:12]}"
    shared = f"shared.{tenant_id}.{settings.dns_zone}"
    run(infra.upsert_dns_records, infra_pb2.UpsertDnsRecordsRequest(tenant_id=tenant_id, domains=[shared]))

    claim = infra_pb2.UpsertDnsRecordsRequest(tenant_id=other, domains=[shared])
    error = fails_with("InvalidArgument", infra.upsert_dns_records, claim)

    assert error.non_retryable
    records = zone_records(route53, settings.dns_zone)
    # Refused before anything is written: the other tenant's own name was not created either.
    assert (f"{other}.{settings.dns_zone}", "CNAME") not in records
    run(infra.delete_dns_records, infra_pb2.DeleteDnsRecordsRequest(tenant_id=other, domains=[shared]))
    assert cname_of(zone_records(route53, settings.dns_zone), shared) == "app.tenantry.test"


def test_delete_dns_records_twice_succeeds(
    infra: InfrastructureActivities, settings: providers.InfraSettings, route53: Any, tenant_id: str
) -> None:
    domains = [f"d.{tenant_id}.{settings.dns_zone}"]
    run(infra.upsert_dns_records, infra_pb2.UpsertDnsRecordsRequest(tenant_id=tenant_id, domains=domains))
    assert len([k for k in zone_records(route53, settings.dns_zone) if tenant_id in k[0]]) == 4

    delete = infra_pb2.DeleteDnsRecordsRequest(tenant_id=tenant_id, domains=domains)
    run(infra.delete_dns_records, delete)
    run(infra.delete_dns_records, delete)

    assert not [k for k in zone_records(route53, settings.dns_zone) if tenant_id in k[0]]


def test_invalid_domain_is_invalid_argument(infra: InfrastructureActivities, tenant_id: str) -> None:
    request = infra_pb2.UpsertDnsRecordsRequest(tenant_id=tenant_id, domains=["not a domain"])
    assert fails_with("InvalidArgument", infra.upsert_dns_records, request).non_retryable


# --- wiring ----------------------------------------------------------------


def test_activities_match_the_contract(infra: InfrastructureActivities) -> None:
    bound = bind_activities(worker.CONTRACT, infra)
    assert len(bound) == len(worker.CONTRACT.rpcs) == 10


def test_worker_finds_the_zone_it_created(aws: Any, settings: providers.InfraSettings) -> None:
    # A second worker start reuses the zone instead of making another.
    again = providers.from_env(settings)
    zones = boto3.client("route53").list_hosted_zones_by_name(DNSName=settings.dns_zone)["HostedZones"]
    assert len([z for z in zones if z["Name"] == f"{settings.dns_zone}."]) == 1
    assert again.dns.zone == settings.dns_zone


async def test_run_rejects_a_bad_setting_before_connecting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANTRY_BUCKET_PREFIX", "Not_Valid")
    monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")
    with pytest.raises(ConfigError, match="TENANTRY_BUCKET_PREFIX"):
        await worker.run()
