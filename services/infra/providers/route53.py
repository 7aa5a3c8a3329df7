"""Tenant DNS records in one Route53 hosted zone.

Each record the tenant owns has a companion TXT record
`_tenantry-owner.<name>` = "tenant=<id>", written in the same atomic change
batch. It is how a second tenant asking for the same domain gets a conflict
instead of silently sharing it, and how deleting one tenant's records can
never remove another's.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any

import botocore.exceptions

from services.infra.providers import Conflict
from services.infra.providers.aws import error_code, faults_as_unavailable

log = logging.getLogger(__name__)

OWNER_LABEL = "_tenantry-owner"


def _fqdn(name: str) -> str:
    return name.rstrip(".").lower() + "."


def _owner_value(tenant_id: str) -> str:
    return f'"tenant={tenant_id}"'


class Route53Dns:
    """`Dns` on a Route53 hosted zone: CNAME records plus an owner marker each."""

    def __init__(self, client: Any, *, zone_id: str, zone: str) -> None:
        self._route53 = client
        self._zone_id = zone_id
        self._zone = zone

    @property
    def zone(self) -> str:
        return self._zone

    @classmethod
    def find_or_create_zone(cls, client: Any, zone: str) -> Route53Dns:
        """Finds the public hosted zone by name, creating it when missing.

        Production should pre-create the zone (and delegate it from its
        parent); creating it here serves development and tests. Should two
        workers race to create it, every worker picks the same one: the
        lowest id among the zones of that name.
        """
        with faults_as_unavailable(f"finding hosted zone {zone}"):
            zone_id = cls._find_zone(client, zone)
            if zone_id is None:
                log.warning("hosted zone %s is missing; creating it", zone)
                client.create_hosted_zone(
                    Name=zone,
                    CallerReference=f"tenantry-{uuid.uuid4()}",
                    HostedZoneConfig={"Comment": "tenant records managed by tenantry", "PrivateZone": False},
                )
                zone_id = cls._find_zone(client, zone)
        if zone_id is None:
            raise RuntimeError(f"hosted zone {zone} was created but cannot be found")
        log.info("managing DNS records in hosted zone %s (%s)", zone, zone_id)
        return cls(client, zone_id=zone_id, zone=zone)

    @staticmethod
    def _find_zone(client: Any, zone: str) -> str | None:
        found = client.list_hosted_zones_by_name(DNSName=zone, MaxItems="100")["HostedZones"]
        ids = [
            z["Id"]
            for z in found
            if _fqdn(z["Name"]) == _fqdn(zone) and not z.get("Config", {}).get("PrivateZone", False)
        ]
        return min(ids) if ids else None

    def ensure_cnames(self, names: Sequence[str], *, target: str, tenant_id: str, ttl: int) -> None:
        with faults_as_unavailable(f"writing DNS records in {self._zone}"):
            try:
                self._ensure(names, target=target, tenant_id=tenant_id, ttl=ttl)
            except botocore.exceptions.ClientError as err:
                if error_code(err) != "InvalidChangeBatch":
                    raise
                # Someone wrote one of the names between our read and our
                # write (the batch is all-or-nothing): read again and decide,
                # then write with UPSERT, as a name our read still shows free
                # can be refused as existing (seen with moto under concurrent
                # changes to the zone).
                self._ensure(names, target=target, tenant_id=tenant_id, ttl=ttl, create="UPSERT")

    def delete_cnames(self, names: Sequence[str], *, tenant_id: str) -> None:
        with faults_as_unavailable(f"deleting DNS records in {self._zone}"):
            try:
                self._delete(names, tenant_id=tenant_id)
            except botocore.exceptions.ClientError as err:
                if error_code(err) != "InvalidChangeBatch":
                    raise
                self._delete(names, tenant_id=tenant_id)

    def _ensure(
        self, names: Sequence[str], *, target: str, tenant_id: str, ttl: int, create: str = "CREATE"
    ) -> None:
        changes: list[dict[str, Any]] = []
        for name in names:
            records = self._record_sets(name)
            owner = self._owner(name)
            cname = records.pop("CNAME", None)
            if owner is not None and owner != _owner_value(tenant_id):
                raise Conflict(f"dns record {name} already exists and belongs to another tenant")
            if records or (cname is not None and _cname_value(cname) != _fqdn(target)):
                raise Conflict(f"dns record {name} already exists and points elsewhere")
            if cname is not None and owner is None:
                # Ours would have its owner record: the two are written in one
                # batch. Whoever put this one there, it is not this tenant's.
                raise Conflict(f"dns record {name} already exists and has no owner record")
            wanted = {
                "Name": _fqdn(name),
                "Type": "CNAME",
                "TTL": ttl,
                "ResourceRecords": [{"Value": target}],
            }
            if cname is None:
                changes.append({"Action": create, "ResourceRecordSet": wanted})
            elif cname.get("TTL") != ttl:
                changes.append({"Action": "UPSERT", "ResourceRecordSet": wanted})
            if owner is None:
                changes.append({"Action": create, "ResourceRecordSet": self._owner_record(name, tenant_id)})
        if changes:
            self._route53.change_resource_record_sets(
                HostedZoneId=self._zone_id,
                ChangeBatch={"Comment": f"tenantry: records of tenant {tenant_id}", "Changes": changes},
            )

    def _delete(self, names: Sequence[str], *, tenant_id: str) -> None:
        changes: list[dict[str, Any]] = []
        for name in names:
            owner_record = self._record_sets(f"{OWNER_LABEL}.{name}").get("TXT")
            if owner_record is None or _txt_values(owner_record) != [_owner_value(tenant_id)]:
                if self._record_sets(name):
                    log.warning("dns record %s is not tenant %s's; leaving it in place", name, tenant_id)
                continue
            cname = self._record_sets(name).get("CNAME")
            if cname is not None:
                changes.append({"Action": "DELETE", "ResourceRecordSet": cname})
            changes.append({"Action": "DELETE", "ResourceRecordSet": owner_record})
        if changes:
            self._route53.change_resource_record_sets(
                HostedZoneId=self._zone_id,
                ChangeBatch={
                    "Comment": f"tenantry: removing records of tenant {tenant_id}",
                    "Changes": changes,
                },
            )

    def _owner(self, name: str) -> str | None:
        record = self._record_sets(f"{OWNER_LABEL}.{name}").get("TXT")
        if record is None:
            return None
        values = _txt_values(record)
        return values[0] if len(values) == 1 else ""

    def _owner_record(self, name: str, tenant_id: str) -> dict[str, Any]:
        return {
            "Name": _fqdn(f"{OWNER_LABEL}.{name}"),
            "Type": "TXT",
            "TTL": 300,
            "ResourceRecords": [{"Value": _owner_value(tenant_id)}],
        }

    def _record_sets(self, name: str) -> dict[str, dict[str, Any]]:
        """The record sets at exactly `name`, by type, as Route53 returns them (fit for a DELETE)."""
        page = self._route53.list_resource_record_sets(
            HostedZoneId=self._zone_id, StartRecordName=_fqdn(name), MaxItems="20"
        )
        return {
            rrset["Type"]: rrset
            for rrset in page["ResourceRecordSets"]
            if _fqdn(rrset["Name"]) == _fqdn(name)
        }


def _cname_value(rrset: dict[str, Any]) -> str | None:
    if "AliasTarget" in rrset:
        return None
    values = [_fqdn(r["Value"]) for r in rrset.get("ResourceRecords", [])]
    return values[0] if len(values) == 1 else None


def _txt_values(rrset: dict[str, Any]) -> list[str]:
    return [r["Value"] for r in rrset.get("ResourceRecords", [])]
