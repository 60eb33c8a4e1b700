"""deploy/monitoring/: the Prometheus configuration, rules and their unit tests pass promtool; rules and the Grafana
dashboard use exactly the metric names com.ggvision.Health exports (and the dashboard shows all of them); the
Alertmanager template routes by severity, inhibits what it says it inhibits and holds no secrets.

promtool comes with Debian's `prometheus` package (`make test` installs it); amtool, used for one extra check,
with `prometheus-alertmanager`. Tests that need a missing tool are skipped, saying so.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ggvision.contract.metrics import METRICS

REPO = Path(__file__).resolve().parents[2]
MON = REPO / "deploy" / "monitoring"
PROMETHEUS_YML = MON / "prometheus.yml"
ALERTMANAGER_YML = MON / "alertmanager.yml"
DASHBOARD = MON / "grafana" / "ggvision-dashboard.json"
RULE_FILES = sorted((MON / "rules").glob("*.yml"))
RULE_TESTS = sorted((MON / "rules" / "tests").glob("*.yml"))

METRIC = re.compile(r"ggvision_[a-z0-9_]+")
PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
MATCHER = re.compile(r'^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"(.*)"\s*$')

# What com.ggvision.Health exports, from the contract the exporter reads too (counters get prometheus_client's
# `_total` suffix on the wire).
HEALTH_METRICS = frozenset(f"{name}_total" if kind == "counter" else name for name, (kind, _, _) in METRICS.items())

# The alerts the pack promises (Alertmanager's inhibitions and the README name them).
REQUIRED_ALERTS = frozenset(
    {
        "InferenceHung",
        "CameraDown",
        "CameraSilent",
        "InferenceLatencyHigh",
        "InferenceErrorRatioHigh",
        "ComponentDown",
        "ComponentRestartingOften",
        "ComponentMemoryLeak",
        "DiskAlmostFull",
        "MemoryPressure",
        "CPUTemperatureHigh",
        "GPUTemperatureHigh",
        "GPUMemoryNearlyFull",
        "UplinkBacklogGrowing",
        "EndpointDown",
        "EdgeBoxMetricsDown",
    }
)
SEVERITIES = ("critical", "warning")
DASHBOARD_ROWS = [
    "Hardware",
    "GPU",
    "ML / Inference",
    "Network / Uplink",
    "Cameras / Application",
    "Components",
    "Health alerts",
]
DASHBOARD_VARIABLES = {"DS_PROMETHEUS", "site", "thing", "camera", "component"}


# ----------------------------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool") or ("/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None)
    if path is None:
        pytest.skip("promtool is not installed (Debian package `prometheus`; `make test` installs it)")
    return path


def _run(*args: str | Path, cwd: Path = MON) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=60)


def _help(promtool: str, *command: str) -> str | None:
    """`promtool <command> --help`, or None where this promtool lacks the command (older releases)."""
    proc = _run(promtool, *command, "--help")
    return proc.stdout + proc.stderr if proc.returncode == 0 else None


def _explain(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"


def _load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _rules(kind: str) -> list[dict[str, Any]]:
    """Every alerting (kind="alert") or recording (kind="record") rule of the rule files."""
    return [rule for f in RULE_FILES for group in _load_yaml(f)["groups"] for rule in group["rules"] if kind in rule]


def _matchers(matchers: list[str]) -> list[tuple[str, str, str]]:
    out = []
    for m in matchers:
        parsed = MATCHER.match(m)
        assert parsed, f"cannot parse matcher {m!r}"
        out.append(parsed.groups())
    return out


def _matches(matchers: list[str], labels: dict[str, str]) -> bool:
    for name, op, value in _matchers(matchers):
        actual = labels.get(name, "")
        if (op == "=" and actual != value) or (op == "!=" and actual == value):
            return False
        if (op == "=~" and not re.fullmatch(value, actual)) or (op == "!~" and re.fullmatch(value, actual)):
            return False
    return True


def _receivers_for(route: dict[str, Any], labels: dict[str, str]) -> list[str]:
    """Alertmanager's routing: depth first, first matching child wins unless it says `continue`."""
    found: list[str] = []
    for child in route.get("routes", []):
        if _matches(child.get("matchers", []), labels):
            found += _receivers_for(child, labels)
            if not child.get("continue", False):
                break
    return found or [route["receiver"]]


def _alertnames_in(matchers: list[str], known: set[str]) -> set[str]:
    """The alert names a list of matchers selects, out of the known ones."""
    names = set()
    for name, op, value in _matchers(matchers):
        if name != "alertname":
            continue
        if op == "=":
            names.add(value)
        elif op == "=~":
            names |= {n for n in known if re.fullmatch(value, n)}
            for alternative in value.split("|"):
                if re.fullmatch(r"[A-Za-z0-9]+", alternative):
                    names.add(alternative)  # a plain name in an alternation must be a real alert
    return names


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """All panels, rows' nested (collapsed) panels included."""
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL of the dashboard: panel targets, variable queries (label_values selectors), annotations."""
    exprs = [t["expr"] for p in _panels(dashboard["panels"]) for t in p.get("targets", [])]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            inner = re.fullmatch(r"label_values\((.+),\s*[a-zA-Z_]+\)", query)
            assert inner, f"variable {var['name']}: expected label_values(selector, label), got {query!r}"
            exprs.append(inner.group(1))
    exprs += [a["expr"] for a in dashboard["annotations"]["list"] if "expr" in a]
    return exprs


# ----------------------------------------------------------------------------------------------- promtool


def test_promtool_check_config(promtool: str) -> None:
    proc = _run(promtool, "check", "config", PROMETHEUS_YML)
    assert proc.returncode == 0, _explain(proc)
    assert "SUCCESS" in proc.stdout + proc.stderr


@pytest.mark.parametrize("rule_file", RULE_FILES, ids=lambda p: p.name)
def test_promtool_check_rules(promtool: str, rule_file: Path) -> None:
    lint = ["--lint-fatal"] if "--lint-fatal" in (_help(promtool, "check", "rules") or "") else []
    proc = _run(promtool, "check", "rules", *lint, rule_file)
    assert proc.returncode == 0, _explain(proc)


@pytest.mark.parametrize("test_file", RULE_TESTS, ids=lambda p: p.name)
def test_promtool_test_rules(promtool: str, test_file: Path) -> None:
    proc = _run(promtool, "test", "rules", test_file)
    assert proc.returncode == 0, _explain(proc)
    assert "SUCCESS" in proc.stdout


def _discovered(promtool: str, config_dir: Path) -> list[dict[str, Any]]:
    if _help(promtool, "check", "service-discovery") is None:
        pytest.skip("this promtool has no `check service-discovery` (Debian 12's promtool 2.42 has it)")
    # file_sd answers at once; promtool waits out --timeout (30s by default) whatever happens
    args = ("check", "service-discovery", "--timeout=3s", "prometheus.yml", "ggvision-health")
    proc = _run(promtool, *args, cwd=config_dir)
    assert proc.returncode == 0, _explain(proc)
    return json.loads(proc.stdout)


def test_every_target_is_labelled_with_site_and_thing(promtool: str) -> None:
    targets = _discovered(promtool, MON)
    assert targets, "targets/*.yml lists no edge box"
    for target in targets:
        labels = target["labels"]
        assert labels["job"] == "ggvision-health"
        assert labels["site"] and labels["thing"], labels
        assert labels["instance"] == labels["thing"], "instance is the thing name"


def test_targets_without_site_or_thing_are_dropped(promtool: str, tmp_path: Path) -> None:
    shutil.copytree(MON, tmp_path / "monitoring")
    config_dir = tmp_path / "monitoring"
    for f in (config_dir / "targets").glob("*.yml"):
        f.unlink()
    (config_dir / "targets" / "mixed.yml").write_text(
        yaml.safe_dump(
            [
                {"targets": ["10.0.0.1:9108"], "labels": {"site": "s1", "thing": "t1"}},
                {"targets": ["10.0.0.2:9108"], "labels": {"site": "s1"}},
                {"targets": ["10.0.0.3:9108"], "labels": {"thing": "t3"}},
            ]
        )
    )
    kept = [t["labels"] for t in _discovered(promtool, config_dir) if t["labels"]]
    assert [(t["__address__"], t["instance"]) for t in kept] == [("10.0.0.1:9108", "t1")]


def test_dashboard_promql_parses(promtool: str, dashboard: dict[str, Any], tmp_path: Path) -> None:
    """Each dashboard query, with Grafana's variables filled in, is valid PromQL (checked as a recording rule)."""
    values = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h"}
    rules = []
    for i, expr in enumerate(_dashboard_exprs(dashboard)):
        for var, value in values.items():
            expr = expr.replace(var, value)
        expr = re.sub(r"\$\{?[A-Za-z_]+\}?", ".*", expr)  # $site, $thing, ... inside =~ "..."
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    rule_file = tmp_path / "dashboard-queries.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    proc = _run(promtool, "check", "rules", rule_file)
    assert proc.returncode == 0, _explain(proc)


# ----------------------------------------------------------------------------------------------- prometheus.yml


def test_prometheus_config_loads_every_rule_file_and_alerts() -> None:
    config = _load_yaml(PROMETHEUS_YML)
    loaded = sorted((PROMETHEUS_YML.parent / f).resolve() for f in config["rule_files"])
    assert all(p.is_file() for p in loaded), loaded
    assert loaded == [p.resolve() for p in RULE_FILES], "every rules/*.yml is loaded, and only those"
    assert config["alerting"]["alertmanagers"], "alerts go to an Alertmanager"
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert "ggvision-health" in jobs


def test_target_files_give_each_box_a_site_and_thing() -> None:
    files = sorted((MON / "targets").glob("*.yml"))
    assert files
    for f in files:
        for group in _load_yaml(f):
            assert group["targets"], f
            assert group["labels"].get("site") and group["labels"].get("thing"), f"{f.name}: {group}"


# ----------------------------------------------------------------------------------------------- rules


def test_rules_use_only_health_metrics() -> None:
    for rule in _rules("alert") + _rules("record"):
        name, expr = rule.get("alert") or rule["record"], rule["expr"]
        used = set(METRIC.findall(expr))
        assert used <= HEALTH_METRICS, f"{name}: unknown metrics {sorted(used - HEALTH_METRICS)}"
        # the one exception: Prometheus' own scrape-health series `up` (EdgeBoxMetricsDown)
        assert used or re.match(r"\s*up\{", expr), f"{name} queries neither a Health metric nor `up`"


def test_every_alert_has_for_severity_summary_and_description() -> None:
    alerts = _rules("alert")
    assert {a["alert"] for a in alerts} >= REQUIRED_ALERTS
    for alert in alerts:
        name = alert["alert"]
        assert alert.get("for"), f"{name} has no `for:` duration"
        assert alert.get("labels", {}).get("severity") in SEVERITIES, name
        annotations = alert.get("annotations", {})
        summary, description = annotations.get("summary", ""), annotations.get("description", "")
        assert summary.strip() and description.strip(), f"{name} needs a summary and a description"
        for where in ("$labels.site", "$labels.thing"):
            assert where in summary and where in description, f"{name}: say where ({where})"
        assert "for more than" in description, f"{name}: say since when"
        component = alert["labels"].get("component")
        assert component is None or component.startswith("com.ggvision."), name


def test_every_alert_has_a_firing_and_a_silent_unit_test() -> None:
    fires, silent = set(), set()
    for f in RULE_TESTS:
        for case in _load_yaml(f)["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {a["alert"] for a in _rules("alert")}
    assert names - fires == set(), "alerts never tested firing"
    assert names - silent == set(), "alerts never tested not firing"
    assert (fires | silent) - names == set(), "tests of alerts that do not exist"


def test_every_recording_rule_is_unit_tested() -> None:
    exprs = " ".join(
        check["expr"]
        for f in RULE_TESTS
        for case in _load_yaml(f)["tests"]
        for check in case.get("promql_expr_test", [])
    )
    for rule in _rules("record"):
        assert re.search(rf"(?<![\w:]){re.escape(rule['record'])}(?![\w:])", exprs), rule["record"]


def test_rule_unit_tests_load_the_rule_files() -> None:
    tested = {(f.parent / r).resolve() for f in RULE_TESTS for r in _load_yaml(f)["rule_files"]}
    assert tested == {p.resolve() for p in RULE_FILES}


# ----------------------------------------------------------------------------------------------- alertmanager.yml


@pytest.fixture(scope="module")
def alertmanager() -> dict[str, Any]:
    return _load_yaml(ALERTMANAGER_YML)


def test_alertmanager_routes_critical_to_pager_and_warning_to_chat(alertmanager: dict[str, Any]) -> None:
    route = alertmanager["route"]
    receivers = {r["name"] for r in alertmanager["receivers"]}

    def walk(r: dict[str, Any]) -> Iterator[dict[str, Any]]:
        yield r
        for child in r.get("routes", []):
            yield from walk(child)

    assert {r["receiver"] for r in walk(route) if "receiver" in r} <= receivers
    assert {"site", "alertname"} <= set(route["group_by"])
    where = {"site": "site-a", "thing": "gg-a-01"}
    assert "pager" in _receivers_for(route, {**where, "alertname": "CameraDown", "severity": "critical"})
    warning = _receivers_for(route, {**where, "alertname": "MemoryPressure", "severity": "warning"})
    assert warning == ["chat"]
    assert "pager" not in _receivers_for(route, {**where, "alertname": "Unlabelled"})


def test_alertmanager_inhibitions(alertmanager: dict[str, Any]) -> None:
    alerts = _rules("alert")
    names = {a["alert"] for a in alerts}
    inhibit = alertmanager["inhibit_rules"]
    for rule in inhibit:
        mentioned = _alertnames_in(rule["source_matchers"], names) | _alertnames_in(rule["target_matchers"], names)
        assert mentioned <= names, f"inhibit rule names unknown alerts {sorted(mentioned - names)}"
        assert {"site", "thing"} <= set(rule["equal"]), f"inhibitions stay within one box: {rule}"

    def muted(target: dict[str, str], source: dict[str, str]) -> bool:
        return any(
            _matches(r["source_matchers"], source)
            and _matches(r["target_matchers"], target)
            and all(source.get(label, "") == target.get(label, "") for label in r["equal"])
            for r in inhibit
        )

    def firing(name: str, severity: str | None = None, **labels: str) -> dict[str, str]:
        rule = next(a for a in alerts if a["alert"] == name and severity in (None, a["labels"]["severity"]))
        return {"alertname": name, "site": "site-a", "thing": "gg-a-01", **rule["labels"], **labels}

    capture_down = firing("ComponentDown", component="com.ggvision.Capture")
    inference_down = firing("ComponentDown", component="com.ggvision.Inference")
    for camera_alert in ("CameraDown", "CameraSilent", "InferenceHung"):
        assert muted(firing(camera_alert, camera="cam1"), capture_down), camera_alert
    assert muted(firing("InferenceLatencyHigh", model="yolo"), inference_down)
    assert not muted(firing("CameraDown", camera="cam1"), inference_down)
    assert not muted(firing("CameraDown", camera="cam1"), {**capture_down, "thing": "gg-a-02"}), "another box"
    assert not muted(firing("ComponentDown", component="com.ggvision.Inference"), capture_down)
    disk = {"path": "/"}
    assert muted(firing("DiskAlmostFull", "warning", **disk), firing("DiskAlmostFull", "critical", **disk))
    assert not muted(firing("DiskAlmostFull", "warning", **disk), firing("DiskAlmostFull", "critical", path="/data"))


def test_alertmanager_holds_no_secrets_only_documented_placeholders(alertmanager: dict[str, Any]) -> None:
    secretish = re.compile(r"(key|url|token|password|secret)$", re.IGNORECASE)

    def walk(node: Any, path: str) -> Iterator[tuple[str, Any]]:
        if isinstance(node, dict):
            for k, v in node.items():
                yield from walk(v, f"{path}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                yield from walk(v, f"{path}[{i}]")
        else:
            yield path, node

    for path, value in walk(alertmanager, ""):
        if secretish.search(path):
            assert isinstance(value, str) and PLACEHOLDER.fullmatch(value), f"{path} must be a ${{...}} placeholder"
    placeholders = set(PLACEHOLDER.findall(ALERTMANAGER_YML.read_text()))
    assert placeholders
    readme = (MON / "README.md").read_text()
    for name in placeholders:
        assert f"${{{name}}}" in readme, f"README.md does not document ${{{name}}}"


def test_amtool_accepts_the_filled_in_template(tmp_path: Path) -> None:
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.skip("amtool is not installed (Debian package `prometheus-alertmanager`)")
    values = {"PAGERDUTY_ROUTING_KEY": "0123456789abcdef0123456789abcdef"}
    text = PLACEHOLDER.sub(
        lambda m: values.get(m.group(1), "https://chat.example.invalid/hook"), ALERTMANAGER_YML.read_text()
    )
    filled = tmp_path / "alertmanager.yml"
    filled.write_text(text)
    proc = _run(amtool, "check-config", filled)
    assert proc.returncode == 0, _explain(proc)
    for labels, expected in (("severity=critical", "pager,chat"), ("severity=warning", "chat")):
        proc = _run(amtool, "config", "routes", "test", f"--config.file={filled}", labels)
        assert proc.stdout.strip() == expected, _explain(proc)


# ----------------------------------------------------------------------------------------------- grafana


def test_dashboard_shape(dashboard: dict[str, Any]) -> None:
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard["uid"] and dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert set(variables) >= DASHBOARD_VARIABLES
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    panels = list(_panels(dashboard["panels"]))
    assert [p["title"] for p in panels if p["type"] == "row"] == DASHBOARD_ROWS
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    cells: set[tuple[int, int]] = set()
    for p in panels:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, f"{p['title']} overlaps another panel"
        cells |= mine


def test_every_panel_queries_prometheus_through_the_variables(dashboard: dict[str, Any]) -> None:
    ds = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    for panel in _panels(dashboard["panels"]):
        if panel["type"] == "row":
            continue
        title = panel["title"]
        assert panel["datasource"] == ds, title
        assert panel.get("targets"), f"{title} has no targets"
        for target in panel["targets"]:
            expr = target.get("expr", "")
            assert expr.strip(), f"{title}: empty query"
            assert target["datasource"] == ds, title
            assert 'site=~"$site"' in expr and 'thing=~"$thing"' in expr, f"{title}: {expr}"
            if "ggvision_camera_" in expr:
                assert 'camera=~"$camera"' in expr, f"{title}: {expr}"
            if "ggvision_component_" in expr:
                assert 'component=~"$component"' in expr, f"{title}: {expr}"


def test_dashboard_uses_only_health_metrics(dashboard: dict[str, Any]) -> None:
    used = {m for expr in _dashboard_exprs(dashboard) for m in METRIC.findall(expr)}
    assert used - HEALTH_METRICS == set(), "unknown metric names in the dashboard"


def test_dashboard_shows_every_health_metric(dashboard: dict[str, Any]) -> None:
    in_panels = {
        m for p in _panels(dashboard["panels"]) for t in p.get("targets", []) for m in METRIC.findall(t["expr"])
    }
    assert HEALTH_METRICS - in_panels == set(), "metrics without a panel"


def test_readme_describes_every_file() -> None:
    readme = (MON / "README.md").read_text()
    for f in MON.rglob("*"):
        if f.is_file() and f.name != "README.md":
            rel = f.relative_to(MON).as_posix()
            assert rel in readme or f"{f.parent.relative_to(MON).as_posix()}/" in readme, rel
