"""The README's promises: the code location validates, `tasklane-sim` serves, `make dev` runs both."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
import requests
import yaml
from dotenv import dotenv_values

from tasklane_sim.server import free_port, wait_until_healthy
from tests.support.dagster_daemon import session_processes, wait_for_webserver, wait_until

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv" / "bin"


def run_checked(command: list[str], **env: str) -> str:
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=180, env={**os.environ, **env})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def test_dg_check_defs_passes_with_no_warning_at_all() -> None:
    output = run_checked([str(BIN / "dg"), "check", "defs"], VIRTUAL_ENV=str(ROOT / ".venv"))
    assert "All definitions loaded successfully" in output
    assert "arning" not in output, output


def test_tasklane_sim_command_serves_the_config_on_the_given_port(tmp_path: Path) -> None:
    config = tmp_path / "sim.yaml"
    config.write_text(
        yaml.safe_dump(
            {"admin_token": "adm", "workspaces": [{"id": "acme", "tokens": ["t"], "records": {"tasks": 100}}]}
        )
    )
    port = free_port()
    process = subprocess.Popen([str(BIN / "tasklane-sim"), "--config", str(config), "--port", str(port)])
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", 60, process)
        page = requests.get(
            f"http://127.0.0.1:{port}/v1/workspaces/acme/tasks", headers={"Authorization": "Bearer t"}, timeout=10
        )
        assert page.status_code == 200 and len(page.json()["data"]) == 25
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0


@pytest.mark.e2e  # a real make dev: the simulator and dagster dev
def test_make_dev_serves_the_demo_simulator_the_dagster_ui_and_metrics_and_stops_on_term(tmp_path: Path) -> None:
    sim_port, ui_port, metrics_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "SIM_PORT": str(sim_port),
        "DAGSTER_PORT": str(ui_port),
        "DRIPFEED_METRICS_PORT": str(metrics_port),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
    }
    log = tmp_path / "make-dev.log"  # a file, not a pipe: nobody reads a pipe while make dev runs, and it would fill
    with log.open("w") as out:
        process = subprocess.Popen(
            ["make", "dev"], cwd=ROOT, env=env, start_new_session=True, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_until_healthy(f"http://127.0.0.1:{sim_port}", 240, process)
        tokens = dotenv_values(ROOT / ".env")  # as the dagster CLI reads it
        admin = requests.get(
            f"http://127.0.0.1:{sim_port}/_sim/workspaces",
            headers={"Authorization": f"Bearer {tokens['TASKLANE_SIM_ADMIN_TOKEN']}"},
            timeout=30,
        ).json()["data"]
        tasks = {ws["id"]: ws["records"]["tasks"] for ws in admin}
        assert {"acme", "globex", "initech", "umbrella"} <= set(tasks)
        assert max(tasks.values()) >= 200_000
        acme = requests.get(
            f"http://127.0.0.1:{sim_port}/v1/workspaces/acme/tasks",
            headers={"Authorization": f"Bearer {tokens['TASKLANE_TOKEN_ACME']}"},
            timeout=30,
        )
        assert acme.status_code == 200
        wait_for_webserver(f"http://127.0.0.1:{ui_port}", process, log.read_text, 180)
        info = requests.get(f"http://127.0.0.1:{ui_port}/server_info", timeout=10).json()
        assert "dagster_webserver_version" in info
        metrics = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30).text
        for tenant in ("acme", "globex", "initech", "umbrella"):
            assert f'tenant="{tenant}"' in metrics and tokens[f"TASKLANE_TOKEN_{tenant.upper()}"] not in metrics
        assert "dripfeed_daemon_heartbeat_timestamp_seconds" in metrics, "it reads the demo's Dagster instance"
        process.send_signal(signal.SIGTERM)  # `kill` of a `make dev` left in the background: make only
        process.wait(timeout=60)
        wait_until(lambda: not session_processes(process.pid), 60, "every process of make dev to stop")
    finally:
        for left in session_processes(process.pid):
            left.kill()
