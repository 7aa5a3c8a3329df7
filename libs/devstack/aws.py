"""moto in server mode whose AWS state outlives it (`make dev`).

moto keeps everything in memory. Its recorder (moto/moto_api/_internal/recorder)
appends every request it handles to a file (MOTO_RECORDER_FILEPATH, one JSON
line each; bodies that are bytes, such as S3 objects, base64-encoded) and
`/moto-api/recorder/replay-recording` sends them again, one after the other,
without recording the replay. moto draws every id (hosted zones, VPCs, secret
ARN suffixes, request ids) from one random generator that `/moto-api/seed`
seeds; so a replay after the same seed draws the same ids, provided the
requests are handled in the order they were recorded. The stock server handles
requests on concurrent threads (the infra worker creates a tenant's bucket,
DNS records and deployment at once), which would interleave the draws and the
recorded lines; this server handles one AWS request at a time. Requests to
/moto-api/ are not serialised: a replay is one of them and calls the server
back. Two gaps of the recorder are closed here: a chunked body (no
Content-Length) would be recorded empty, and S3 multipart upload ids come
from os.urandom, not from the seeded generator.

`restore` is the start-up sequence the Stack runs before any process calls AWS:
seed, replay what was recorded, record from then on.

Run as `python -m libs.devstack.aws --port P [--recording FILE]`.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

# Any number does: the same one at every start is what makes the ids repeat.
SEED = 20260101


class OneAtATime:
    """WSGI middleware: one AWS request at a time, so that moto draws its ids
    and records the requests in one order, the order a replay repeats."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if str(environ.get("PATH_INFO", "")).startswith("/moto-api/"):
            return self._app(environ, start_response)
        if str(environ.get("HTTP_TRANSFER_ENCODING", "")).lower() == "chunked":
            # The recorder reads a body by its Content-Length and records a
            # chunked one (no length) as empty: give it the length.
            body = environ["wsgi.input"].read()
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            del environ["HTTP_TRANSFER_ENCODING"]
        with self._lock:
            result = self._app(environ, start_response)
            try:
                return list(result)  # the whole answer while the lock is held
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()


class _OsWithSeededUrandom:
    """`os` for moto's S3 models, whose multipart upload ids come from
    os.urandom, which no seed reaches: drawn from moto's seeded generator
    instead, a replayed upload gets the id its recorded parts name."""

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    @staticmethod
    def urandom(size: int) -> bytes:
        from moto.moto_api._internal import mock_random

        return mock_random.randbytes(size)


def restore(endpoint: str, recording: Path, *, timeout: float = 600) -> int:
    """Seeds moto at `endpoint`, replays `recording` (if there is one) and
    starts recording; returns how many requests were replayed. Only while
    nothing else calls the server: a request in between would draw ids."""

    def post(path: str, wait: float = 10) -> None:
        request = urllib.request.Request(f"{endpoint}{path}", data=b"", method="POST")
        try:
            with urllib.request.urlopen(request, timeout=wait) as reply:
                reply.read()
        except OSError as err:
            raise RuntimeError(
                f"the AWS emulator failed at {path} ({err}); see its log. `make clean` starts over"
            ) from None

    post(f"/moto-api/seed?a={SEED}")
    replayed = 0
    if recording.exists():
        _drop_torn_line(recording)
        with recording.open("rb") as lines:
            replayed = sum(1 for line in lines if line.strip())
        if replayed:
            post("/moto-api/recorder/replay-recording", timeout)
    post("/moto-api/recorder/start-recording")
    return replayed


def _drop_torn_line(recording: Path) -> None:
    """Cuts a last line the server did not finish (it was killed while writing it)."""
    with recording.open("rb+") as file:
        data = file.read()
        if data and not data.endswith(b"\n"):
            file.truncate(data.rfind(b"\n") + 1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--recording", type=Path, help="the recording to replay and append to")
    args = parser.parse_args(argv)
    os.environ.setdefault("MOTO_PORT", str(args.port))
    if args.recording is not None:
        # Read when moto is imported. Recording starts only after the replay (`restore`).
        os.environ["MOTO_RECORDER_FILEPATH"] = str(args.recording)
        os.environ.pop("MOTO_ENABLE_RECORDING", None)
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    if args.recording is not None:
        import moto.s3.models

        moto.s3.models.os = _OsWithSeededUrandom()  # type: ignore[assignment]

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        "127.0.0.1",
        args.port,
        OneAtATime(app),  # type: ignore[arg-type]
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
