"""The recorded histories replay with the interceptor every orchestrator has
(libs/logs.py StepLog): the step header it adds to each activity is no
command change, and the search-attribute upserts are behind their patch."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.common import HeaderCodecBehavior
from temporalio.worker import Replayer

from libs import codec, logs
from libs.temporal import SANDBOX_RUNNER
from orchestrator.worker import WORKFLOWS
from tests.replay.test_replay import HISTORIES, RING, history


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_recorded_history_replays_with_the_step_log(path: Path) -> None:
    replayer = Replayer(
        workflows=list(WORKFLOWS),
        workflow_runner=SANDBOX_RUNNER,
        data_converter=codec.data_converter(RING),
        header_codec_behavior=HeaderCodecBehavior.CODEC,
        interceptors=[logs.StepLog()],
    )
    result = await replayer.replay_workflow(history(path), raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.stem}: {result.replay_failure}"
