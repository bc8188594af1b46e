"""Fixtures for the UI test: the simulator, a real `dagster dev` in a scratch directory, and a headless
Chromium page driven by Playwright.

Chromium is Debian's `chromium` package (`make test` installs it), not a Playwright browser build:
`playwright install` downloads from a CDN that CI machines may not reach."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tasklane_sim import SimServer
from tasklane_sim.server import free_port
from tests.support.dagster_daemon import BIN, dripfeed_env, scratch_instance, stop_schedules, wait_for_webserver
from tests.support.dagster_ui import SCREENSHOTS, WEBHOOK_SECRET, DagsterUI
from tests.support.simulator import workspace_config
from tests.support.tenants_files import tenant_entry, write_tenants

TENANTS = ("acme", "globex", "initech")
UI_TIMEOUT_MS = 60_000  # the first page load of the UI takes 10-30 s on a 2-core machine


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """Keep each phase's report on the item, so the page fixture knows whether to save a failure screenshot."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def _stop_process_group(process: subprocess.Popen, grace: float = 20) -> None:
    """SIGTERM the group, then SIGKILL what is left.

    Dagster maps SIGTERM to SIGINT's handler, so a `dagster dev` started from a process that ignores
    SIGINT (any background job of a non-interactive shell, as in CI) inherits that and ignores SIGTERM
    too: then there is no point in waiting."""
    if process.poll() is None and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):  # children outlive a leader that exited on its own
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


@pytest.fixture
def dagster_ui(
    make_sim: Callable[..., SimServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[DagsterUI]:
    """`dagster dev` over three small simulated tenants, their partitions already registered.

    Registering them before start means the tenant_registry sensor finds nothing to onboard, so the
    runs the test sees are the ones it launched, and nobody waits for the sensor's 60-second tick."""
    small = {"users": 10, "projects": 4, "tasks": 100}
    sim = make_sim(*(workspace_config(tenant, records=small) for tenant in TENANTS))
    home = scratch_instance(tmp_path)
    tenants = write_tenants(tmp_path / "tenants.yaml", *(tenant_entry(tenant, tier="daily") for tenant in TENANTS))
    env = dripfeed_env(tmp_path, home, tenants, sim.base_url, *TENANTS)
    env["DRIPFEED_ALERT_WEBHOOK_URL"] = f"https://hooks.example/{WEBHOOK_SECRET}"  # a secret: shown by name only
    stop_schedules(tmp_path, env)  # its tenants have not synced: a tier's next tick would request them
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    port, log = free_port(), tmp_path / "dagster-dev.log"
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("tenants", list(TENANTS))
        with log.open("w") as out:
            process = subprocess.Popen(
                [str(BIN / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
                cwd=tmp_path,  # not the repository root, whose ./.env holds the demo's tokens
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_for_webserver(url, process, log.read_text)
            yield DagsterUI(url=url, instance=instance)
        finally:
            _stop_process_group(process)
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(log, SCREENSHOTS / "dagster-dev.log")  # what CI keeps when a step fails


def _chromium_path() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.fail("Debian's chromium is not installed: run tests/system-packages.sh (make test does)")
    return path


@pytest.fixture
def ui_page(request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh headless Chromium page; its screenshots go to test-output/ui/ (a failure's too)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for old in SCREENSHOTS.glob("*.png"):
        old.unlink()
    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium refuses its sandbox.
        browser = playwright.chromium.launch(executable_path=_chromium_path(), headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.set_default_timeout(UI_TIMEOUT_MS)
        expect.set_options(timeout=UI_TIMEOUT_MS)
        # A fresh instance greets its first visitor with a newsletter dialog over whatever page is open;
        # a person skips it, whenever it shows up.
        community = page.get_by_role("dialog").filter(has_text="Join the Dagster community")
        page.add_locator_handler(community, lambda: community.get_by_role("button", name="Skip").click())
        try:
            yield page
        finally:
            report = getattr(request.node, "report_call", None)
            if report is not None and report.failed:
                page.screenshot(path=SCREENSHOTS / "failure.png")
            browser.close()
