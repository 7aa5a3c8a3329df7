"""Entry point of the notification worker (queue tenantry-notification)."""

from __future__ import annotations

from libs import contracts
from libs.contracts import bind_activities
from libs.temporal import run_worker
from services.notification import providers
from services.notification.activities import NotificationActivities

CONTRACT = contracts.NOTIFICATION


async def run() -> None:
    # Reads and checks every setting before connecting to Temporal.
    mailer = providers.from_env()
    await run_worker(
        task_queue=CONTRACT.task_queue,
        activities=bind_activities(CONTRACT, NotificationActivities(mailer)),
    )
