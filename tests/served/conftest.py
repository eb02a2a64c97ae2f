"""One ``langgraph dev`` server per blocking mode, shared by the module's tests.

``detect`` is what users run (blockbuster on, the default): today the library's async path
does blocking SQLite I/O on the event loop, so every run there fails with ``BlockingError``
(issue 18); its tests are strict xfails that accept only that failure. ``allow`` runs the
server with ``--allow-blocking``, where the tests must pass."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.served._client import BlockingDetected
from tests.served._server import Blocking, Server

BLOCKING_BREAKS_RUNS = pytest.mark.xfail(
    strict=True, raises=BlockingDetected, reason="async store I/O blocks the loop: issue 18"
)


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("detect", marks=BLOCKING_BREAKS_RUNS, id="blocking-detected"),
        pytest.param("allow", id="allow-blocking"),
    ],
)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    mode: Blocking = request.param
    served = Server(tmp_path_factory.mktemp(f"langgraph-dev-{mode}"), mode)
    served.start()
    try:
        yield served
    finally:
        served.stop()
