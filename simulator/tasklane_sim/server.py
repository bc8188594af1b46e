"""Run the simulator: from the CLI, or for tests and benchmarks in a thread or a subprocess."""

from __future__ import annotations

import functools
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests
import uvicorn
import yaml

from .admin_client import SimAdminClient
from .app import create_app
from .config import SimConfig, parse_config
from .connection_faults import FaultableHttpProtocol
from .simulator import Simulator


def uvicorn_config(sim: Simulator, *, access_log: bool = False, **kwargs: Any) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(sim),
        http=FaultableHttpProtocol,
        lifespan="on",
        access_log=access_log,
        log_level="warning",
        timeout_keep_alive=30,
        **kwargs,
    )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class SimServer:
    """The real simulator over a real socket: `with SimServer(config) as sim: sim.base_url ...`.

    In a thread (default) the test can also reach `sim.simulator`; as a subprocess it gets a core
    of its own, which benchmarks and multi-process tests want.
    """

    def __init__(
        self, config: SimConfig | dict[str, Any], *, subprocess_mode: bool = False, host: str = "127.0.0.1"
    ) -> None:
        self.config = config if isinstance(config, SimConfig) else parse_config(config)
        self.subprocess_mode = subprocess_mode
        self.host = host
        self.port = 0
        self.simulator: Simulator | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._process: subprocess.Popen | None = None
        self._config_file: Path | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        """The simulator's process: this one in thread mode, the child in subprocess mode."""
        return self._process.pid if self._process else os.getpid()

    @functools.cached_property
    def admin(self) -> SimAdminClient:
        return SimAdminClient(self.base_url, self.config.resolve_admin_token())

    def start(self, timeout: float = 120.0) -> SimServer:
        if self.subprocess_mode:
            self._start_subprocess(timeout)
        else:
            self._start_thread(timeout)
        return self

    def _start_thread(self, timeout: float) -> None:
        self.simulator = Simulator(self.config)
        sock = socket.socket()
        sock.bind((self.host, 0))
        self.port = sock.getsockname()[1]
        self._server = uvicorn.Server(uvicorn_config(self.simulator))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="tasklane-sim", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the simulator did not start")
            time.sleep(0.01)

    def _start_subprocess(self, timeout: float) -> None:
        self.port = free_port(self.host)
        handle, name = tempfile.mkstemp(prefix="tasklane-sim-", suffix=".yaml")
        with os.fdopen(handle, "w") as out:
            yaml.safe_dump(self.config.model_dump(mode="json", exclude_none=True), out)
        self._config_file = Path(name)
        command = [
            sys.executable,
            "-m",
            "tasklane_sim",
            "--config",
            name,
            "--host",
            self.host,
            "--port",
            str(self.port),
        ]
        self._process = subprocess.Popen(command)
        try:
            wait_until_healthy(self.base_url, timeout, self._process)
        except BaseException:
            self.stop()  # a simulator that is not healthy in time is not left running
            raise

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            if self._thread:
                self._thread.join(timeout=10)
            if self.simulator:
                self.simulator.close()
        if self._process is not None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
        if self._config_file:
            self._config_file.unlink(missing_ok=True)

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def wait_until_healthy(base_url: str, timeout: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the simulator exited with code {process.returncode}")
        try:
            if requests.get(f"{base_url}/_sim/health", timeout=1).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"the simulator at {base_url} was not healthy within {timeout:.0f}s")


def serve(config: SimConfig, host: str, port: int, access_log: bool = False) -> None:
    """Generate every workspace, then serve until interrupted (the CLI's main loop)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s tasklane-sim %(levelname)s %(message)s")
    started = time.perf_counter()
    sim = Simulator(config)
    logging.getLogger("tasklane_sim").info(
        "%d workspaces ready in %.1fs; serving http://%s:%d (admin API under /_sim/)",
        len(sim.workspaces),
        time.perf_counter() - started,
        host,
        port,
    )
    # uvicorn shuts down gracefully on SIGTERM, then re-raises it: exit cleanly so the data dir goes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        uvicorn.Server(uvicorn_config(sim, access_log=access_log, host=host, port=port)).run()
    finally:
        sim.close()
