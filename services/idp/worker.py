"""The identity worker: polls `tenantry-idp` with the identity activities."""

from __future__ import annotations

import logging

from libs import contracts
from libs.contracts import bind_activities
from libs.temporal import run_worker
from services.idp import providers
from services.idp.activities import IdentityActivities

log = logging.getLogger(__name__)

CONTRACT = contracts.IDENTITY


async def run() -> None:
    """Reads configuration, opens the provider (creating its store), then polls until SIGTERM."""
    provider = providers.from_env()
    await provider.open()
    try:
        await run_worker(
            task_queue=CONTRACT.task_queue,
            activities=bind_activities(CONTRACT, IdentityActivities(provider)),
            on_shutdown=provider.close,
        )
    finally:
        # Also when Temporal cannot be reached; closing twice is harmless.
        await provider.close()
