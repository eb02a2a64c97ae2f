"""One ``langgraph dev`` server, shared by the module's tests, run as users run it: with
its blocking-call detector (blockbuster) on, so a blocking call our code makes on the event
loop fails the run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.served._server import Blocking, Server


@pytest.fixture(scope="module", params=[pytest.param("detect", id="blocking-detected")])
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
