"""Entry point of the infrastructure worker (queue tenantry-infra)."""

from __future__ import annotations

import asyncio

from libs import contracts
from libs.temporal import run_activity_worker
from services.infra import providers
from services.infra.activities import InfrastructureActivities

CONTRACT = contracts.INFRASTRUCTURE


async def run() -> None:
    # Settings first, so a wrong one stops the process before it touches AWS or Temporal.
    settings = providers.InfraSettings.from_env()
    # Finding the hosted zone is a blocking boto3 call: keep it off the event loop.
    built = await asyncio.to_thread(providers.from_env, settings)
    await run_activity_worker(CONTRACT, InfrastructureActivities(built, settings))
