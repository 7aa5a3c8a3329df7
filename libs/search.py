"""The search attributes of lifecycle runs: find a tenant's runs by attribute.

- `TenantId`: the tenant (`TenantId = "acme"` lists every run of acme:
  provisioning, deletion, suspend, resume, clean-up);
- `PlanTier`: `POOLED`, `BRIDGE` or `SILO`;
- `TenantState`: the state the run last put the tenant in (`ACTIVE`,
  `PROVISION_FAILED`, `DEPROVISIONED`, ...), updated as the run goes.

All three are Keyword attributes, and the namespace must have them before a
facade or an orchestrator starts (`check_registered` says which are
missing and how to add them). The dev server gets them at start
(`DEV_SERVER_FLAGS`); on a cluster:

    temporal operator search-attribute create --namespace <ns> \\
        --name TenantId --type Keyword --name PlanTier --type Keyword \\
        --name TenantState --type Keyword

Only ids, tiers and states: search attributes are never encrypted, so no
personal data goes in them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from google.protobuf.message import Message
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    SearchAttributeUpdate,
    TypedSearchAttributes,
)
from temporalio.service import RPCError

from libs.config import ConfigError
from libs.lifecycle import tenant_of_workflow
from tenantry.tenant.v1 import tenant_pb2

log = logging.getLogger(__name__)

TENANT_ID = SearchAttributeKey.for_keyword("TenantId")
PLAN_TIER = SearchAttributeKey.for_keyword("PlanTier")
TENANT_STATE = SearchAttributeKey.for_keyword("TenantState")
KEYS = (TENANT_ID, PLAN_TIER, TENANT_STATE)
# `temporal server start-dev` flags that register them.
DEV_SERVER_FLAGS = tuple(f for key in KEYS for f in ("--search-attribute", f"{key.name}=Keyword"))


ALL_NAMES = tuple(key.name for key in KEYS)


def create_command(namespace: str, names: Sequence[str] = ALL_NAMES) -> str:
    """The CLI command that registers `names` on a cluster."""
    pairs = " ".join(f"--name {name} --type Keyword" for name in names)
    return f"temporal operator search-attribute create --namespace {namespace} {pairs}"


def tier_value(tier: int) -> str:
    """`PLAN_TIER_SILO` -> `SILO`; empty for an unset tier."""
    if not tier:
        return ""
    return tenant_pb2.PlanTier.Name(tier).removeprefix("PLAN_TIER_")  # type: ignore[arg-type]


def state_value(state: int) -> str:
    """`STATE_ACTIVE` -> `ACTIVE`."""
    return tenant_pb2.Tenant.State.Name(state).removeprefix("STATE_")  # type: ignore[arg-type]


def tier_of(request: Message) -> int:
    """The plan tier a run's request names (its tenant's, or its own field); 0 if none."""
    fields = request.DESCRIPTOR.fields_by_name
    if "tenant" in fields and request.HasField("tenant"):
        return int(request.tenant.plan_tier)  # type: ignore[attr-defined]
    if "plan_tier" in fields:
        return int(request.plan_tier)  # type: ignore[attr-defined]
    return 0


def at_start(workflow_id: str, request: Message) -> TypedSearchAttributes:
    """What a run of a tenant starts with: its tenant and, when known, its tier."""
    pairs: list[SearchAttributePair[str]] = []
    tenant_id = tenant_of_workflow(workflow_id)
    if tenant_id:
        pairs.append(SearchAttributePair(TENANT_ID, tenant_id))
    tier = tier_value(tier_of(request))
    if tier:
        pairs.append(SearchAttributePair(PLAN_TIER, tier))
    return TypedSearchAttributes(pairs)


def updates(
    state: int, *, workflow_id: str, tier: int, current: TypedSearchAttributes
) -> list[SearchAttributeUpdate[str]]:
    """The updates a run makes when the tenant enters `state`: the state, and
    the tenant and tier if the run was started without them."""
    changes: list[SearchAttributeUpdate[str]] = []
    tenant_id = tenant_of_workflow(workflow_id)
    if tenant_id and current.get(TENANT_ID) is None:
        changes.append(TENANT_ID.value_set(tenant_id))
    if tier and current.get(PLAN_TIER) is None:
        changes.append(PLAN_TIER.value_set(tier_value(tier)))
    if current.get(TENANT_STATE) != state_value(state):
        changes.append(TENANT_STATE.value_set(state_value(state)))
    return changes


async def check_registered(client: Client) -> None:
    """Refuses to go on (ConfigError) when the namespace lacks one of the
    attributes: runs would fail to start, or stop at their first update.
    A server that does not let this caller list them gets a warning only."""
    try:
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace)
        )
    except RPCError as err:
        log.warning(
            "cannot list the search attributes of %s (%s); assuming they exist", client.namespace, err
        )
        return
    known = {**listed.system_attributes, **listed.custom_attributes}
    missing = [k.name for k in KEYS if known.get(k.name) != IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD]
    if missing:
        raise ConfigError(
            f"namespace {client.namespace!r} lacks the Keyword search attributes {', '.join(missing)}:"
            f" {create_command(client.namespace, missing)}"
        )
