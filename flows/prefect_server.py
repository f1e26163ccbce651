"""The Prefect API a command's flows report to.

``PREFECT_API_URL`` set (in the environment or the Prefect profile, e.g. for a persistent
``prefect server start``): that server. Otherwise a temporary server of our own, not Prefect's
ephemeral one, which under load failed runs and outlived them: Prefect gives it 20 s to answer
(3 of 3 runs on a busy machine died there) and starts it as a plain child that survives a
SIGKILLed run (~195 MB, for hours). Ours runs the same app the same way, but

- waits up to ``Config.prefect_startup_timeout`` seconds (``RECSYS_PREFECT_STARTUP_TIMEOUT``,
  default 120) for it to answer;
- dies with the process that started it, even a SIGKILLed one (``ml.warehouse.children``), and is
  stopped when the block ends (normal end or exception);
- keeps its SQLite database in the home (``<home>/prefect/``), so two homes never share one
  and the run lock keeps one run per home.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from ml.config import Config, env_name, flag_name
from ml.warehouse.children import dies_with_us

PORT_ATTEMPTS = 3
UVICORN_STARTUP_FAILURE = 3  # uvicorn's exit code when it cannot bind its port (or the app fails to start)


class PrefectServerError(RuntimeError):
    """The temporary Prefect server did not come up."""


class TemporaryServer:
    """Prefect's API server (``prefect.server.api.server:create_app`` under uvicorn, as Prefect's
    own ``SubprocessASGIServer`` runs it, without the UI) as a child process of this one."""

    def __init__(self, directory: Path, timeout: float):
        self.directory = directory
        self.timeout = timeout
        self.log_path = directory / "server.log"
        self.process: subprocess.Popen | None = None
        self.port = 0

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def start(self) -> None:
        """Start it and wait until it answers; stopped again and PrefectServerError if it does not."""
        self.directory.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.timeout
        for _ in range(PORT_ATTEMPTS):
            self._spawn(_free_port())
            if self._answers_before(deadline):
                return
            if self.process.poll() != UVICORN_STARTUP_FAILURE:  # timed out, or failed for good
                break
        code = self.process.poll()
        self.stop()
        if code is None:
            raise PrefectServerError(
                f"the temporary Prefect server did not answer within {self.timeout:g} s "
                f"(raise {flag_name('prefect_startup_timeout')} or {env_name('prefect_startup_timeout')}, or run "
                "`prefect server start` and set PREFECT_API_URL); "
                f"its log: {self.log_path}"
            )
        raise PrefectServerError(f"the temporary Prefect server exited with code {code}; its log: {self.log_path}")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def _spawn(self, port: int) -> None:
        import prefect

        self.port = port
        env = {
            **os.environ,
            "PREFECT_UI_ENABLED": "0",
            "PREFECT__SERVER_EPHEMERAL": "1",
            "PREFECT__SERVER_FINAL": "1",
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{self.directory / 'prefect.db'}",
        }
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "--app-dir",
                    str(prefect.__module_path__.parent),
                    "--factory",
                    "prefect.server.api.server:create_app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--log-level",
                    "error",
                    "--lifespan",
                    "on",
                ],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=dies_with_us(),
            )

    def _answers_before(self, deadline: float) -> bool:
        with httpx.Client(timeout=5) as client:
            while time.monotonic() < deadline and self.process.poll() is None:
                try:
                    if client.get(f"{self.api_url}/health").status_code == 200:
                        return True
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
        return False


def _free_port() -> int:
    """A port free now; if another process takes it first, uvicorn exits and we try another."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def prefect_api(config: Config, log: Callable[[str], None] = print) -> Iterator[str]:
    """The Prefect API URL flows in the block report to: the configured one, else a temporary
    server's (stopped at the end of the block, or by the kernel when this process dies)."""
    from prefect.context import refresh_global_settings_context
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_API_URL

    configured = PREFECT_API_URL.value()
    if configured:
        yield configured
        return
    server = TemporaryServer(config.home / "prefect", config.prefect_startup_timeout)
    log(
        f"starting a temporary Prefect server (up to {server.timeout:g} s; set PREFECT_API_URL to use a persistent one)"
    )
    server.start()
    try:
        log(f"temporary Prefect server on {server.api_url} (pid {server.process.pid})")
        # Prefect reads its settings once; refreshing makes every thread, its log and event
        # workers included, use this server instead of starting an ephemeral one.
        os.environ["PREFECT_API_URL"] = server.api_url
        refresh_global_settings_context()
        try:
            yield server.api_url
        finally:
            APILogWorker.drain_all(timeout=10)  # what the flow logged reaches the server first
            EventsWorker.drain_all(timeout=10)
            del os.environ["PREFECT_API_URL"]
            refresh_global_settings_context()
    finally:
        server.stop()
