"""The identity worker: polls `tenantry-idp` with the identity activities."""

from __future__ import annotations

import logging

from libs import contracts
from libs.temporal import run_activity_worker
from services.idp import providers
from services.idp.activities import IdentityActivities

log = logging.getLogger(__name__)

CONTRACT = contracts.IDENTITY


async def run() -> None:
    """Reads configuration, opens the provider (creating its store), then polls until SIGTERM."""
    provider = providers.from_env()
    await provider.open()
    await run_activity_worker(CONTRACT, IdentityActivities(provider), close=provider.close)
