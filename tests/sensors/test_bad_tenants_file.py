"""A bad tenants.yaml stops only its bad entries. With a malformed entry, an id listed twice, hostile
ids and a tenant whose token is unset beside healthy `globex`, every tick serves globex and names
each bad entry; the registry removes no partition of a tenant whose entry merely broke; the code
location loads; only a file with nothing to read fails a tick, naming the file."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from dripfeed.register_tenants import main as register_tenants_main
from pipeline_assets.history_exports import start_history_export
from resources.alerts import Alerts
from resources.control.deferrals import Deferral
from resources.control.export_jobs import ExportJobs
from resources.tenants import TenantConfigError
from resources.tiers import TIERS
from sensors.deferred_syncs import deferred_syncs
from sensors.export_status import export_status_sensor
from sensors.tenant_freshness import tenant_freshness
from sensors.tenant_registry import tenant_registry
from tasklane_sim import SimServer
from tests.support.dagster_daemon import ROOT
from tests.support.resources import Resources, make_api, resources_for
from tests.support.simulator import workspace_config
from tests.support.tenants_files import bad_tenants_file, tenant_entry
from tests.support.ticks import Tick, schedule_tick, sensor_tick

# initech and umbrella were valid until their entries broke; acme was onboarded before its token variable went
REGISTERED_BEFORE = ["acme", "globex", "initech", "umbrella"]


@pytest.fixture
def bad_file_api(make_sim: Callable[..., SimServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Resources:
    """tenants.yaml with healthy globex among bad entries, on a simulator serving globex."""
    small = {"users": 5, "projects": 3, "tasks": 40}
    sim = make_sim(workspace_config("globex", records=small, exports={"duration_seconds": 0.2}))
    monkeypatch.setenv("TASKLANE_TOKEN_GLOBEX", "token-globex")
    monkeypatch.delenv("TASKLANE_TOKEN_ACME", raising=False)
    path = bad_tenants_file(tmp_path / "tenants.yaml", tenant_entry("globex", history_since="2000-01-01"))
    return make_api(base_url=sim.base_url, tenants_file=str(path), state=str(tmp_path / "control.sqlite3"))


def deferrals_due(instance: dg.DagsterInstance, api: Resources) -> Tick:
    for tenant in ("globex", "acme"):
        api.state.deferrals.defer(Deferral(tenant, time.time() - 1, "a long Retry-After", time.time() - 60, run_id="r"))
    return sensor_tick(deferred_syncs, instance, resources_for(api))


def exports_due(instance: dg.DagsterInstance, api: Resources) -> Tick:
    start_history_export(api.client("globex"), ExportJobs(api.state.store), "users")
    time.sleep(1.1)  # done, and past the vendor's poll_after_seconds
    return sensor_tick(export_status_sensor(), instance, resources_for(api, alerts=Alerts()))


def hourly_tick(instance: dg.DagsterInstance, api: Resources) -> Tick:
    last_tick = TIERS["hourly"].period_start(datetime.now(UTC)) + timedelta(minutes=55)  # every slot is due
    return schedule_tick("hourly_tenants", instance, resources_for(api), last_tick)


@dataclass(frozen=True)
class Sensor:
    name: str
    tick: Callable[[dg.DagsterInstance, Resources], Tick]
    served: Callable[[Tick], list[str]]  # the tenants the tick served
    serves_acme: bool  # freshness evaluates acme, which turns stale without a token; the others leave it out
    names_missing_token: bool  # the ticks that would request a run of acme say which variable to set


TICKS = [
    Sensor("tier schedule", hourly_tick, lambda t: t.tenants, serves_acme=False, names_missing_token=True),
    Sensor("deferred syncs", deferrals_due, lambda t: t.tenants, serves_acme=False, names_missing_token=True),
    Sensor("export status", exports_due, lambda t: t.tenants, serves_acme=False, names_missing_token=False),
    Sensor(
        "freshness",
        lambda instance, api: sensor_tick(tenant_freshness, instance, resources_for(api, alerts=Alerts())),
        lambda t: ["acme", "globex"] if "2 hourly tenants" in t.text else [],
        serves_acme=True,
        names_missing_token=False,
    ),
]


def assert_names_every_bad_entry(tick: Tick) -> None:
    for position in range(3, 12):
        assert f"entry {position} " in tick.text or f"entry {position}:" in tick.text, (position, tick.text)
    assert all(line.isprintable() and len(line) < 1000 for line in tick.log), "no forged line, no 10,000 characters"
    assert "token-" not in tick.text


@pytest.mark.parametrize("sensor", TICKS, ids=[s.name for s in TICKS])
def test_every_tick_serves_the_valid_tenants_and_names_each_bad_entry(
    bad_file_api: Resources, instance: dg.DagsterInstance, sensor: Sensor
) -> None:
    instance.add_dynamic_partitions("tenants", REGISTERED_BEFORE)
    tick = sensor.tick(instance, bad_file_api)
    assert sensor.served(tick) == (["acme", "globex"] if sensor.serves_acme else ["globex"])
    assert_names_every_bad_entry(tick)
    assert ("TASKLANE_TOKEN_ACME" in tick.text) == sensor.names_missing_token


def test_the_registry_keeps_a_broken_entrys_partition_and_adds_a_tenant_once_its_token_is_set(
    bad_file_api: Resources, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    instance.add_dynamic_partitions("tenants", ["globex", "initech", "umbrella"])
    tick = sensor_tick(tenant_registry, instance, resources_for(bad_file_api))
    assert tick.partition_requests == [] and tick.run_requests == [], "nothing removed, nothing added"
    assert "acme: not added yet" in tick.text and "TASKLANE_TOKEN_ACME" in tick.text
    assert_names_every_bad_entry(tick)

    monkeypatch.setenv("TASKLANE_TOKEN_ACME", "token-acme")
    tick = sensor_tick(tenant_registry, instance, resources_for(bad_file_api))
    assert [request.partition_keys for request in tick.partition_requests] == [["acme"]]
    assert tick.tenants == ["acme"], "its first sync"


def test_a_file_with_nothing_to_read_fails_the_tick_naming_the_file(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    path = tmp_path / "tenants.yaml"
    path.write_text("tenants: [\n")
    api = make_api(base_url="http://unused", tenants_file=str(path), state=str(tmp_path / "control.sqlite3"))
    with pytest.raises(TenantConfigError, match=f"{path} is not valid YAML"):
        sensor_tick(tenant_registry, instance, resources_for(api))


def test_the_code_location_loads_with_bad_entries(tmp_path: Path) -> None:
    path = bad_tenants_file(tmp_path / "tenants.yaml", tenant_entry("globex"))
    env = {**os.environ, "DRIPFEED_TENANTS_FILE": str(path), "TASKLANE_BASE_URL": "http://127.0.0.1:9"}
    validate = [str(ROOT / ".venv" / "bin" / "dagster"), "definitions", "validate", "-m", "dripfeed.definitions"]
    # Not from the repository root: the dagster CLI reads ./.env, where make dev keeps the demo's settings.
    done = subprocess.run(validate, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (done.stdout + done.stderr)[-2000:]


def test_register_tenants_registers_the_valid_ones_and_exits_1_naming_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("DRIPFEED_TENANTS_FILE", str(bad_tenants_file(tmp_path / "t.yaml", tenant_entry("globex"))))
    with pytest.raises(SystemExit) as exit_status:
        register_tenants_main()
    assert exit_status.value.code == 1
    printed = capsys.readouterr()
    assert "registered 2 new tenant partition(s): globex, acme" in printed.out
    assert "entry 3 (id 'umbrella')" in printed.err and "entry 11" in printed.err
    with dg.DagsterInstance.get() as instance:
        assert sorted(instance.get_dynamic_partitions("tenants")) == ["acme", "globex"]
