"""Event retention: the tenant-data worker deletes audit events older than
TENANTRY_EVENT_RETENTION_DAYS (default 365; 0 keeps them for ever).

A pass deletes the expired events in batches of BATCH rows, one short
transaction each, oldest first, so that no pass holds locks for long or
blocks appends (they add rows; a batch skips rows another replica holds).
The worker runs a pass at start and then every INTERVAL.
"""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import UTC, datetime, timedelta

from libs.config import ConfigError
from services.tenantdb.providers import TenantDataProvider

log = logging.getLogger(__name__)

VARIABLE = "TENANTRY_EVENT_RETENTION_DAYS"
DEFAULT_DAYS = 365
BATCH = 1000
# Batches in one pass at most: a backlog is worked off over several passes.
MAX_BATCHES = 1000
INTERVAL = timedelta(hours=1)


def retention_days() -> int:
    """TENANTRY_EVENT_RETENTION_DAYS: whole days, 0 for no deletion."""
    raw = os.environ.get(VARIABLE, "").strip() or str(DEFAULT_DAYS)
    try:
        days = int(raw)
    except ValueError:
        raise ConfigError(f"{VARIABLE}={raw!r} is not a whole number of days") from None
    if not 0 <= days <= 100 * 366:
        raise ConfigError(f"{VARIABLE}={raw!r} must be from 0 (keep for ever) to 36600 days")
    return days


async def prune(
    provider: TenantDataProvider, days: int, *, now: datetime | None = None, batch: int = BATCH
) -> int:
    """One pass: deletes the events older than `days` days; returns how many."""
    if days <= 0:
        return 0
    cutoff = (now or datetime.now(UTC)) - timedelta(days=days)
    deleted = 0
    for _ in range(MAX_BATCHES):
        removed = await provider.delete_events_before(cutoff, limit=batch)
        deleted += removed
        if removed < batch:
            break
    if deleted:
        log.info("event retention: %d event(s) older than %d days deleted", deleted, days)
    return deleted


async def run(provider: TenantDataProvider, days: int, *, interval: timedelta = INTERVAL) -> None:
    """Prunes now and then every `interval`, until cancelled; a failed pass is logged and retried."""
    if days <= 0:
        log.info("event retention is off (%s=0): events are kept for ever", VARIABLE)
        return
    while True:
        try:
            await prune(provider, days)
        except Exception as err:  # the database may be away; the next pass tries again
            log.warning("event retention pass failed: %s: %s", type(err).__name__, err)
        await asyncio.sleep(interval.total_seconds())
