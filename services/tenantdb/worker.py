"""The tenant-data worker: polls `tenantry-tenantdb` with the tenant-data activities."""

from __future__ import annotations

import logging

from libs import contracts
from libs.contracts import bind_activities
from libs.temporal import run_worker
from services.tenantdb import providers
from services.tenantdb.activities import TenantDataActivities

log = logging.getLogger(__name__)

CONTRACT = contracts.TENANT_DATA


async def run() -> None:
    """Reads configuration, opens the provider (creating the registry), then polls until SIGTERM."""
    provider = providers.from_env()
    await provider.open()
    try:
        await run_worker(
            task_queue=CONTRACT.task_queue,
            activities=bind_activities(CONTRACT, TenantDataActivities(provider)),
            on_shutdown=provider.close,
        )
    finally:
        # Also when Temporal cannot be reached; closing twice is harmless.
        await provider.close()
