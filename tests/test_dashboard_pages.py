"""The dashboard's pages through Streamlit's own testing API (AppTest runs dashboard/app.py in this process) on both
backends: every page renders without an exception, shows what its backend has, filters change the event list, the
pager moves through an index, and the operator's buttons appear for operators only and act on the rollout state."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from dashboard_dev import CAMERA, SITE, THING, CloudWorld, edge_root
from filter_dev import filter_counts
from streamlit import config as st_config
from streamlit.testing.v1 import AppTest

from ggvision.contract import cloud as names
from rollout.state import StateFile

APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")
PAGES = ("views/fleet.py", "views/cameras.py", "views/events.py", "views/models.py", "views/fire.py")
MODEL = "synthetic-detector"


@pytest.fixture(autouse=True)
def loopback() -> Iterator[None]:
    """AppTest runs the script here: access.gate reads the server.address option (loopback: the technician)."""
    before = st_config.get_option("server.address")
    st_config.set_option("server.address", "127.0.0.1")
    yield
    st_config.set_option("server.address", before)


def app(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], page: str | None = None) -> AppTest:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    at = AppTest.from_file(APP, default_timeout=60).run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def counts_shown(at: AppTest) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The Site / camera page's counts: the totals table's rows and the chart's specs."""
    import json

    tables = [d.value.to_dict("records") for d in at.dataframe]
    specs = [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]
    return [r for t in tables for r in t], [s for s in specs if s.get("title") == "counts per interval"]


def kinds(at: AppTest) -> set[str]:
    found: set[str] = set()

    def walk(node: Any) -> None:
        found.add(getattr(node, "type", ""))
        for child in (getattr(node, "children", None) or {}).values():
            walk(child)

    walk(at._tree)
    return found


def rows(at: AppTest) -> list[dict[str, Any]]:
    return at.dataframe[0].value.to_dict("records")


def rollout_config(tmp_path: Path) -> Path:
    """A rollout.yaml and its state with one promote whose canary passed its gates (as the engine records it)."""
    cfg = tmp_path / "rollout.yaml"
    cfg.write_text(yaml.safe_dump({"backend": "local", "local": {"fleet": str(tmp_path / "no-fleet")}, "stages": [
        {"name": "dev", "group": "ggv-dev"},
        {"name": "staging", "group": "ggv-staging", "canary": {"group": "ggv-staging-canary"}}]}))
    state = StateFile(tmp_path / ".ggvision" / "rollout" / "state.json")
    rid = state.start_rollout("promote", MODEL, "1.1.0", "staging", component=f"com.ggvision.Model.{MODEL}")
    state.event(rid, "gates_passed", "canary ggv-staging-canary: gates passed", results=[
        {"gate": "inference_p95_ms", "thing": "box-1", "status": "pass", "value": 12.0, "baseline": 10.0,
         "limit": "<= 2x"},
        {"gate": "error_ratio", "thing": "box-1", "status": "pass", "value": 0.0, "baseline": 0.0, "limit": "<= 0.01"}])
    state.finish(rid, "succeeded")
    state.set_stage(MODEL, "staging", version="1.1.0", status="passed")
    return cfg


def test_no_view_runs_without_the_gate() -> None:
    """A `pages/` folder beside app.py is Streamlit's old multipage layout: its files would be served as pages run
    without app.py, so without access.gate (the browser found this; AppTest does not show it)."""
    assert not (Path(APP).parent / "pages").exists()


# ---------------------------------------------------------------------------------------------- edge


@pytest.fixture
def edge_env(tmp_path: Path) -> dict[str, str]:
    return {"GGVISION_DASHBOARD_BACKEND": "edge", "GGVISION_DASHBOARD_ROOT": str(edge_root(tmp_path)),
            "GGVISION_DASHBOARD_ROLLOUT_CONFIG": str(rollout_config(tmp_path))}


def test_every_page_renders_on_the_edge_backend(monkeypatch: pytest.MonkeyPatch, edge_env: dict[str, str]) -> None:
    at = app(monkeypatch, edge_env)
    assert at.title[0].value == "Fleet" and rows(at)[0]["device"] == "test-thing"
    assert rows(at)[0]["uplink backlog"] == "11 items" and rows(at)[0]["link"] == "partial"
    assert any("IoT Core bridge" in w.value for w in at.warning)  # the Uplink's last error needs attention
    at.switch_page("views/cameras.py").run()
    assert not at.exception and "image" in kinds(at) and any("road" in c.value for c in at.caption)
    at.switch_page("views/fire.py").run()
    assert not at.exception and any("not recorded" in c.value for c in at.caption)
    at.switch_page("views/models.py").run()
    assert not at.exception and "vega_lite_chart" in kinds(at)  # the canary's gate metrics


def test_the_camera_page_shows_the_edge_counts(monkeypatch: pytest.MonkeyPatch, edge_env: dict[str, str]) -> None:
    import logging

    from dashboard.data.edge import EdgeSettings, EdgeSource
    from ggvision.component.storage import StorageFaults
    from ggvision.config.filter import LocalLogConfig
    from ggvision.filter.locallog import LocalLog

    t0 = names.minute_of(time.time()) - 1800
    log = LocalLog(EdgeSource(EdgeSettings(Path(edge_env["GGVISION_DASHBOARD_ROOT"]))).log_dir(), LocalLogConfig(),
                   "test-thing", StorageFaults("t", logging.getLogger("t")))
    for put in filter_counts("synthetic-1", t0):
        log.counts(put["payload"])
    at = app(monkeypatch, edge_env, "views/cameras.py")
    table, charts = counts_shown(at)
    assert {"what": "line entrance", "count": "in · person", "value": 6} in table
    assert {"what": "zone hall", "count": "most at once", "value": 1} in table and len(charts) == 1
    at.selectbox(key="cam_range").select("last hour").run()
    assert not at.exception and {"what": "line entrance", "count": "in · person", "value": 6} in counts_shown(at)[0]


def test_edge_events_filters_change_the_list(monkeypatch: pytest.MonkeyPatch, edge_env: dict[str, str]) -> None:
    at = app(monkeypatch, edge_env, "views/events.py")
    everything = rows(at)
    assert len(everything) >= 4 and {r["label"] for r in everything} == {"person", "bicycle"}
    assert {"image", "vega_lite_chart", "video"} <= kinds(at)  # snapshot grid, timeline, the clip player
    at.multiselect(key="ev_labels").select("bicycle").run()
    assert {r["label"] for r in rows(at)} == {"bicycle"} and len(rows(at)) < len(everything)
    at.multiselect(key="ev_labels").unselect("bicycle").run()
    at.selectbox(key="ev_zone").select("road").run()
    assert 0 < len(rows(at)) <= len(everything) and all("road" in r["zones"] for r in rows(at))
    at.selectbox(key="ev_range").select("last hour").run()  # recorded long ago
    assert not at.dataframe and any("No events match" in i.value for i in at.info)


def test_operator_buttons_only_for_operators(monkeypatch: pytest.MonkeyPatch, edge_env: dict[str, str],
                                             tmp_path: Path) -> None:
    viewer = app(monkeypatch, {**edge_env, "GGVISION_DASHBOARD_EDGE_ROLE": "viewer"}, "views/models.py")
    labels = {b.label for b in viewer.button}
    assert not labels & {"Pause rollouts", "Resume rollouts", "Roll back"}
    assert rows(viewer)[0]["version"] in ("-", "1.1.0")
    op = app(monkeypatch, {**edge_env, "GGVISION_DASHBOARD_EDGE_ROLE": "operator"}, "views/models.py")
    assert {"Pause rollouts", "Roll back"} <= {b.label for b in op.button}
    state = StateFile(tmp_path / ".ggvision" / "rollout" / "state.json")
    op.selectbox(key="op_stage").select("staging").run()
    op.button(key="op_pause").click().run()
    assert state.paused("staging") and not state.paused("dev")  # the engine's own pause flag
    assert "Resume rollouts" in {b.label for b in op.button}
    op.button(key="op_rollback").click().run()  # the engine runs, and its backend (no local fleet here) refuses
    assert any("Rollback failed" in e.value and "fleet" in e.value.lower() for e in op.error), [
        e.value for e in op.error]


# ---------------------------------------------------------------------------------------------- cloud


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudWorld]:
    w = CloudWorld(Path(tmp_path_factory.mktemp("dash-pages")))
    t0 = time.time() - 900
    w.real_event("door-p1", t0)
    w.real_event("door-p2", t0 + 60, label="car", with_snapshot=False)
    w.bulk(120, time.time() - 30, site="site-many")
    yield w
    w.stop()


def test_every_page_renders_on_the_cloud_backend(monkeypatch: pytest.MonkeyPatch, world: CloudWorld) -> None:
    for page in PAGES:
        app(monkeypatch, world.env, page)  # no exception on any page


def test_the_camera_page_shows_the_cloud_counts(monkeypatch: pytest.MonkeyPatch, world: CloudWorld) -> None:
    t0 = names.minute_of(time.time()) - 1800
    world.counts(THING, CAMERA, [p["payload"] for p in filter_counts(CAMERA, t0)])
    at = app(monkeypatch, world.env, "views/cameras.py")
    table, charts = counts_shown(at)
    assert {"what": "line entrance", "count": "out · person", "value": 2} in table and len(charts) == 1


def test_cloud_events_verdict_filter_and_pager(monkeypatch: pytest.MonkeyPatch, world: CloudWorld) -> None:
    at = app(monkeypatch, {**world.env, "GGVISION_DASHBOARD_SITES": "site-many"}, "views/events.py")
    at.selectbox(key="ev_site").select(SITE).run()
    listed = rows(at)
    assert [r["event"] for r in listed] == ["door-p2", "door-p1"]
    assert [r["verdict"] for r in listed] == [names.UNVERIFIED, names.CONFIRMED]
    assert {"image", "vega_lite_chart"} <= kinds(at)
    assert any(m.label == "cloud" for m in at.metric)  # the cloud's verdict beside the edge's
    at.selectbox(key="ev_verdict").select(names.CONFIRMED).run()
    assert [r["event"] for r in rows(at)] == ["door-p1"]
    at.selectbox(key="ev_verdict").select("any").run()
    at.selectbox(key="ev_site").select("site-many").run()
    first = [r["event"] for r in rows(at)]
    assert len(first) == 50 and any("page 1" in c.value for c in at.caption)
    next(b for b in at.button if b.label == "Next page").click().run()
    second = [r["event"] for r in rows(at)]
    assert len(second) == 50 and not set(first) & set(second) and any("page 2" in c.value for c in at.caption)
    next(b for b in at.button if b.label == "Previous page").click().run()
    assert [r["event"] for r in rows(at)] == first
