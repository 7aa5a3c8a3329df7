"""The tenant-data worker: polls `tenantry-tenantdb` with the tenant-data activities."""

from __future__ import annotations

import asyncio
import logging

from libs import config, contracts
from libs.backup import BackupSettings, BackupStore
from libs.temporal import run_activity_worker
from services.tenantdb import providers, retention
from services.tenantdb.activities import TenantDataActivities
from services.tenantdb.providers.secrets import TenantCredentials

log = logging.getLogger(__name__)

CONTRACT = contracts.TENANT_DATA


async def run() -> None:
    """Reads configuration, opens the provider (creating the registry), then polls until SIGTERM.

    The backup store (TENANTRY_BACKUP_BUCKET, the endpoint and credentials
    from the standard AWS variables) makes its bucket on first use, so the
    worker starts and serves the registry while S3 is away. The tenants'
    database secrets go to Secrets Manager at the same endpoint. Beside the
    activities, the worker deletes expired audit events (retention.py).
    """
    provider = providers.from_env()
    backups = BackupStore(BackupSettings.from_env())
    days = retention.retention_days()
    await provider.open()
    credentials = TenantCredentials(config.database_url())
    activities = TenantDataActivities(provider, backups=backups, credentials=credentials)
    pruning = asyncio.create_task(retention.run(provider, days), name="event-retention")

    async def close() -> None:
        pruning.cancel()
        await asyncio.gather(pruning, return_exceptions=True)
        await provider.close()

    await run_activity_worker(CONTRACT, activities, close=close)
