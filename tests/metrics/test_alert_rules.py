"""deploy/prometheus's scrape config and alert rules pass Prometheus' own checks (`promtool check`),
and the rules their unit tests (`promtool test rules`), which hold a firing and a quiet case for
every rule."""

from __future__ import annotations

import subprocess

import yaml

from tests.support.dagster_daemon import ROOT

RULES = ROOT / "deploy" / "prometheus"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], cwd=RULES, capture_output=True, text=True, timeout=120)


def test_the_alert_rules_and_the_scrape_config_are_valid_and_the_rules_unit_tests_pass() -> None:
    configured = promtool("check", "config", "prometheus.yml")  # it loads the rules too
    assert configured.returncode == 0, configured.stdout + configured.stderr
    checked = promtool("check", "rules", "dripfeed-rules.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", "dripfeed-rules.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_rule_has_a_firing_and_a_quiet_case() -> None:
    rules = yaml.safe_load((RULES / "dripfeed-rules.yml").read_text())
    names = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    cases = yaml.safe_load((RULES / "dripfeed-rules.test.yml").read_text())["tests"]
    firing, quiet = set(), set()
    for case in cases:
        for check in case["alert_rule_test"]:
            if check["exp_alerts"]:
                firing.add(check["alertname"])
                # a quiet case too: a series beside the one in trouble that raises nothing
                if len(case["input_series"]) > len(check["exp_alerts"]):
                    quiet.add(check["alertname"])
            else:
                quiet.add(check["alertname"])
    assert firing == names and quiet == names, (names - firing, names - quiet)
