"""Start and stop a real Flowmill server subprocess on loopback, for end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
E2E_NODES = REPO / "tests" / "fixtures" / "e2e_custom_nodes"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerProcess:
    """`python main.py` in `workdir` (its folders and queue database live there)."""

    def __init__(self, workdir: Path, port: int | None = None, *, custom_nodes: Path = E2E_NODES,
                 token: str | None = None, extra_args: Sequence[str] = ()) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.custom_nodes = custom_nodes
        self.token = token
        self.extra_args = tuple(extra_args)
        self.process: subprocess.Popen | None = None
        self.log = workdir / "server.log"
        # Loopback only: never route test traffic through a proxy from the environment.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> ServerProcess:
        command = [sys.executable, str(REPO / "main.py"), "--port", str(self.port), "--cpu",
                   "--custom-nodes-dir", str(self.custom_nodes), *self.extra_args]
        if self.token is not None:
            command += ["--token", self.token]
        environment = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT,
                                            env=environment)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log.read_text()}")
            try:
                self.get("/system_stats")
                return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not become ready:\n{self.log.read_text()}")

    def kill(self) -> None:
        """SIGKILL: no cleanup runs, as in a crash."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def _request(self, path: str, body: dict | None = None) -> urllib.request.Request:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        data = json.dumps(body).encode() if body is not None else None
        return urllib.request.Request(self.url + path, data=data, headers=headers)

    def get(self, path: str) -> Any:
        with self._opener.open(self._request(path), timeout=10) as response:
            return json.loads(response.read())

    def post(self, path: str, body: dict) -> Any:
        with self._opener.open(self._request(path, body), timeout=10) as response:
            raw = response.read()
            return json.loads(raw) if raw else None
