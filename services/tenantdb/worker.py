"""The tenant-data worker: polls `tenantry-tenantdb` with the tenant-data activities."""

from __future__ import annotations

import logging

from libs import contracts
from libs.temporal import run_activity_worker
from services.tenantdb import providers
from services.tenantdb.activities import TenantDataActivities

log = logging.getLogger(__name__)

CONTRACT = contracts.TENANT_DATA


async def run() -> None:
    """Reads configuration, opens the provider (creating the registry), then polls until SIGTERM."""
    provider = providers.from_env()
    await provider.open()
    await run_activity_worker(CONTRACT, TenantDataActivities(provider), close=provider.close)
