"""The Dagster UI as a person uses it: headless Chromium against a real `dagster dev` over the simulator.

Each step saves a screenshot under test-output/ui/, so a reviewer can see what a person would."""

from __future__ import annotations

import re

import dagster as dg
import pytest
from playwright.sync_api import Locator, Page, expect

from tests.support.dagster_ui import SCREENSHOTS, WEBHOOK_SECRET, DagsterUI

pytestmark = pytest.mark.e2e  # `dagster dev` and a browser

RUN_TIMEOUT_MS = 150_000  # a small tenant's sync takes seconds; a loaded CI machine starts runs slowly


def screenshot(page: Page, name: str) -> None:
    page.screenshot(path=SCREENSHOTS / f"{name}.png")


def open_materialize_dialog(page: Page, ui: DagsterUI) -> Locator:
    """From the sync_tenant job, the dialog that launches its three assets for chosen tenants."""
    page.goto(f"{ui.url}/locations/dripfeed/jobs/sync_tenant")
    page.get_by_role("button", name="Materialize all").click()
    dialog = page.get_by_role("dialog").filter(has_text="Launch runs to materialize 3 assets")
    expect(dialog).to_be_visible()
    return dialog


def pick_partitions(page: Page, dialog: Locator, *tenants: str) -> None:
    """Tick tenants in the partition picker, then close the picker (Escape closes it, not the dialog)."""
    dialog.get_by_text("Select a partition or create one").click()
    for tenant in tenants:
        page.get_by_role("menuitem", name=tenant).click()
    page.keyboard.press("Escape")
    expect(page.get_by_role("textbox", name="Filter partitions")).to_be_hidden()  # faded out, not mid-fade
    count = f"{len(tenants)} partition" + ("s" if len(tenants) > 1 else "")
    expect(dialog.get_by_text(count, exact=True)).to_be_visible()


def test_a_person_sees_the_tenant_assets_syncs_one_tenant_and_can_backfill_two(
    dagster_ui: DagsterUI, ui_page: Page
) -> None:
    page, ui = ui_page, dagster_ui

    # a. The tasklane group's lineage shows the three synced assets.
    page.goto(f"{ui.url}/locations/dripfeed/asset-groups/tasklane")
    for asset in ("users", "projects", "tasks"):
        expect(page.get_by_text(asset, exact=True)).to_be_visible()
    expect(page.get_by_text("3 partitions")).to_have_count(3)  # one footer per asset node
    screenshot(page, "01_tasklane_asset_graph")

    # b. The tasks asset lists every tenant as a partition, none synced yet.
    page.get_by_role("tab", name="List").click()
    page.get_by_role("link", name="tasks").click()
    page.get_by_role("tab", name="Partitions").click()
    expect(page.get_by_text("3 Partitions Selected")).to_be_visible()
    expect(page.get_by_text("Missing (3)")).to_be_visible()
    for tenant in ("acme", "globex", "initech"):  # each name is drawn once, beside a hidden copy for truncation
        expect(page.get_by_text(tenant, exact=True).filter(visible=True)).to_be_visible()
    screenshot(page, "02_tasks_partitions")

    # c. Sync one tenant from the UI and watch its run succeed.
    dialog = open_materialize_dialog(page, ui)
    pick_partitions(page, dialog, "acme")
    launch = dialog.get_by_role("button", name="Launch 1 run")
    expect(launch).to_be_enabled()
    screenshot(page, "03_materialize_dialog_one_tenant")
    launch.click()
    view = page.get_by_role("region", name="Notifications").get_by_role("link", name="View")
    href = view.get_attribute("href") or ""
    run_id = href.removeprefix("/runs/")
    assert re.fullmatch(r"[0-9a-f-]{36}", run_id), href
    view.click()
    expect(page.get_by_text("partition: acme")).to_be_visible()
    expect(page.get_by_text("Success", exact=True)).to_be_visible(timeout=RUN_TIMEOUT_MS)
    screenshot(page, "04_run_success")

    run = ui.instance.get_run_by_id(run_id)
    assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
    assert run.job_name == "sync_tenant" and run.tags["dagster/partition"] == "acme"
    latest = ui.instance.get_latest_materialization_event(dg.AssetKey("tasks"))
    assert latest is not None and latest.run_id == run_id
    assert latest.dagster_event is not None and latest.dagster_event.partition == "acme"

    # The asset's partitions now show acme as synced.
    page.goto(f"{ui.url}/assets/tasks?view=partitions")
    expect(page.get_by_text("Materialized (1)")).to_be_visible()
    expect(page.get_by_text("Missing (2)")).to_be_visible()
    screenshot(page, "05_tasks_partitions_after_sync")

    # d. Choosing two tenants turns the launch into a backfill (not launched).
    dialog = open_materialize_dialog(page, ui)
    pick_partitions(page, dialog, "globex", "initech")
    expect(dialog.get_by_role("button", name="Launch backfill")).to_be_enabled()
    screenshot(page, "06_backfill_dialog_two_tenants")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    assert ui.instance.get_backfills() == []  # cancelled: nothing was launched

    # e. The resources' settings: where they come from, and never a secret's value.
    for resource, variable in (("tasklane", "TASKLANE_BASE_URL"), ("alerts", "DRIPFEED_ALERT_WEBHOOK_URL")):
        page.goto(f"{ui.url}/locations/dripfeed/resources/{resource}")
        expect(page.get_by_text(variable).first).to_be_visible()
        assert WEBHOOK_SECRET not in page.content()
        screenshot(page, f"07_resource_{resource}")
