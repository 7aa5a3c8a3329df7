"""Entry point of the notification worker (queue tenantry-notification)."""

from __future__ import annotations

import asyncio

from libs import contracts
from libs.temporal import run_activity_worker
from services.notification import providers
from services.notification.activities import NotificationActivities

CONTRACT = contracts.NOTIFICATION


async def run() -> None:
    # Reads and checks every setting before connecting to Temporal.
    notifier = providers.from_env()
    # SES in development: verify the sender identity once, before polling.
    await asyncio.to_thread(providers.prepare, notifier)
    await run_activity_worker(CONTRACT, NotificationActivities(notifier))
