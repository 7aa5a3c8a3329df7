"""Process-wide logging: one line per event, the process name on each."""

from __future__ import annotations

import logging
import os


def configure(process: str) -> logging.Logger:
    level = os.environ.get("TENANTRY_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=level,
        format=f"%(asctime)s %(levelname)s {process} %(name)s: %(message)s",
    )
    # Request-level chatter of the AWS SDK would log bucket and record names
    # at DEBUG; keep it at WARNING unless asked for.
    for noisy in ("botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return logging.getLogger(process)
