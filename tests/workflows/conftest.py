from __future__ import annotations

import pytest
from temporalio.client import Client


@pytest.fixture
async def client(temporal_address: str) -> Client:
    return await Client.connect(temporal_address)
