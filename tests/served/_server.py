"""Start the served example (``integrations/langgraph-server``) under a real ``langgraph dev``.

The server runs as a subprocess on a free port of 127.0.0.1, in a temporary folder that
holds a copy of the example's files (``langgraph dev`` resolves the paths of
``langgraph.json`` and writes its ``.langgraph_api`` data relative to its working folder),
with the guardrails store named by ``AGENT_GUARDRAILS_STORE``. ``stop()`` ends it and
anything it started (its own process group), also when the tests fail.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "integrations" / "langgraph-server"
EXAMPLE_FILES = ("langgraph.json", "guarded_agent.py", "dev_auth.py", "pack.yaml")
BIN = Path(sys.executable).parent
GRAPH = "guarded_agent"

Blocking = Literal["detect", "allow"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    """One ``langgraph dev`` process serving the example."""

    workdir: Path
    blocking: Blocking
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def store_url(self) -> str:
        return f"sqlite:///{self.workdir / 'guardrails' / 'served.db'}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self, timeout: float = 90.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "guardrails").mkdir(exist_ok=True)
        for name in EXAMPLE_FILES:
            shutil.copy2(EXAMPLE / name, self.workdir / name)
        command = [
            str(BIN / "langgraph"),
            "dev",
            "--config",
            "langgraph.json",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--no-browser",
            "--no-reload",
        ]
        if self.blocking == "allow":
            command.append("--allow-blocking")
        env = {
            **os.environ,
            "AGENT_GUARDRAILS_STORE": self.store_url,
            "LANGGRAPH_NO_VERSION_CHECK": "true",  # no look-up of newer releases
            "LANGSMITH_TRACING": "false",
            "LANGCHAIN_TRACING_V2": "false",
            "PYTHONUNBUFFERED": "1",
        }
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() ends all of it
            )
        try:
            self._wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"langgraph dev exited with {self.process.returncode}:\n{self.log()[-4000:]}"
                )
            # Given a port someone took meanwhile, langgraph dev serves on another one.
            moved = re.search(r"Port \d+ is already in use, using port (\d+) instead", self.log())
            if moved:
                self.port = int(moved.group(1))
            with (
                contextlib.suppress(urllib.error.URLError, OSError),
                urllib.request.urlopen(f"{self.url}/ok", timeout=2) as response,
            ):
                if response.status == 200:
                    return
            time.sleep(0.2)
        raise TimeoutError(f"langgraph dev not healthy after {timeout}s:\n{self.log()[-4000:]}")

    def stop(self) -> None:
        """End the server and its process group: SIGTERM, then SIGKILL after 15 s. The
        group is signalled before the leader is reaped, so its id cannot have been reused."""
        process = self.process
        if process is None:
            return
        self.process = None
        _signal_group(process.pid, signal.SIGTERM)
        if not _exited(process.pid, timeout=15):
            _signal_group(process.pid, signal.SIGKILL)
            _exited(process.pid, timeout=15)
        _signal_group(process.pid, signal.SIGKILL)  # whatever it left in its group
        process.wait(timeout=15)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _exited(pid: int, timeout: float) -> bool:
    """Whether ``pid`` (our child) exited within ``timeout``; it is not reaped."""
    deadline = time.monotonic() + timeout
    while True:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if info is not None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``agent-guardrails ARGS`` from this environment, as a subprocess."""
    return subprocess.run(
        [str(BIN / "agent-guardrails"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
