"""The identity worker: polls `tenantry-idp` with the identity activities."""

from __future__ import annotations

import logging

from libs import contracts
from libs.backup import BackupSettings, BackupStore
from libs.temporal import run_activity_worker
from services.idp import providers
from services.idp.activities import IdentityActivities

log = logging.getLogger(__name__)

CONTRACT = contracts.IDENTITY


async def run() -> None:
    """Reads configuration, opens the provider (creating its store), then polls until SIGTERM.

    Exports go to the backup location (TENANTRY_BACKUP_BUCKET; the AWS
    variables give its endpoint and credentials); its bucket is made on first use.
    """
    provider = providers.from_env()
    backups = BackupStore(BackupSettings.from_env())
    await provider.open()
    activities = IdentityActivities(provider, backups=backups)
    await run_activity_worker(CONTRACT, activities, close=provider.close)
