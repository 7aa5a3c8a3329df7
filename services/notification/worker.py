"""Entry point of the notification worker (queue tenantry-notification)."""

from __future__ import annotations

from libs import contracts
from libs.temporal import run_activity_worker
from services.notification import providers
from services.notification.activities import NotificationActivities

CONTRACT = contracts.NOTIFICATION


async def run() -> None:
    # Reads and checks every setting before connecting to Temporal.
    mailer = providers.from_env()
    await run_activity_worker(CONTRACT, NotificationActivities(mailer))
