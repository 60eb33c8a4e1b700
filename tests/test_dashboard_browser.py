"""Every dashboard page in Debian's headless chromium through a real `streamlit run` (tests/browser_dev.py): the edge
backend on a recorded runtime root — fleet, a camera's snapshot <img> loaded with its zones and its counts chart
(the Filter's counts/1.0 in its local log), the events listed with their snapshots, the timeline chart drawn, the
clip <video> playing, the gate plot and the operator's buttons, the fire page — and the cloud backend's Events page
on moto with items the real ingest handler decided. Screenshots go to the test's folder, or to
$GGVISION_SCREENSHOTS (docs/img/dashboard/ for the pictures docs/dashboard.md shows)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_dev import Browser, StreamlitServer, browser_available
from dashboard_dev import SITE, CloudWorld, edge_root
from filter_dev import filter_counts
from test_dashboard_pages import rollout_config

from ggvision.contract import cloud as names

REPO = Path(__file__).resolve().parent.parent
APP = REPO / "dashboard" / "app.py"
PYTHONPATH = os.pathsep.join([str(REPO), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])

IMG_LOADED = ("const imgs = [...document.querySelectorAll('[data-testid=\"stImage\"] img, "
              "[data-testid=\"stImageContainer\"] img')];"
              "return imgs.length && imgs.every(i => i.complete && i.naturalWidth > 0)"
              " && imgs.map(i => i.naturalWidth)")
CHART_DRAWN = ("const c = document.querySelector('.vega-embed canvas, .vega-embed svg');"
               "return c && c.getBoundingClientRect().width > 50 && c.getBoundingClientRect().height > 50")
CHART_IN_VIEW = ("const c = document.querySelector('.vega-embed canvas, .vega-embed svg');"
                 "const t = [...document.querySelectorAll('[data-testid=\"stDataFrame\"]')];"
                 "const r = c && c.getBoundingClientRect();"
                 "return r && r.height > 50 && r.top >= 0 && r.bottom <= window.innerHeight"
                 " && t.length > 0 && t.every(e => e.getBoundingClientRect().bottom <= window.innerHeight)")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    reason = browser_available()
    if reason:
        pytest.skip(reason)
    with Browser(Path(tmp_path_factory.mktemp("shots")), height=1400) as b:
        yield b


@pytest.fixture(scope="module")
def edge_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StreamlitServer]:
    d = Path(tmp_path_factory.mktemp("edge-app"))
    root = edge_root(d)
    write_counts(root, names.minute_of(time.time()) - 1800)
    env = {"GGVISION_DASHBOARD_BACKEND": "edge", "GGVISION_DASHBOARD_ROOT": str(root),
           "GGVISION_DASHBOARD_ROLLOUT_CONFIG": str(rollout_config(d)), "PYTHONPATH": PYTHONPATH}
    with StreamlitServer(APP, env=env, log_path=d / "streamlit.log") as app:
        yield app


def write_counts(root: Path, t0: float) -> None:
    """The real camera pipeline's counts/1.0 in the box's local log, written by the real LocalLog."""
    import logging

    from dashboard.data.edge import EdgeSettings, EdgeSource
    from ggvision.component.storage import StorageFaults
    from ggvision.config.filter import LocalLogConfig
    from ggvision.filter.locallog import LocalLog

    log = LocalLog(EdgeSource(EdgeSettings(root)).log_dir(), LocalLogConfig(), "test-thing",
                   StorageFaults("t", logging.getLogger("t")))
    for put in filter_counts("synthetic-1", t0):
        log.counts(put["payload"])


def page(browser: Browser, app: StreamlitServer, path: str, title: str) -> None:
    browser.open(f"{app.url}/{path}")
    browser.wait_text(title)
    assert "Traceback" not in browser.text() and "Error" not in browser.text()[:200], browser.text()[:2000]


def test_fleet_and_camera_pages(browser: Browser, edge_app: StreamlitServer) -> None:
    page(browser, edge_app, "fleet", "Fleet")
    browser.wait_for('[data-testid="stDataFrame"]')  # the devices table (drawn on a canvas: no DOM text)
    browser.wait_text("Needs attention")
    browser.screenshot("fleet")
    page(browser, edge_app, "cameras", "Site / camera")
    widths = browser.wait_js(IMG_LOADED, what="the camera's snapshot loaded")
    assert widths and widths[0] > 100
    browser.wait_text("zones: road")
    browser.wait_text("3 interval(s)")  # the counting analytics: totals table and the chart per interval
    assert browser.wait_js(CHART_DRAWN, what="the counts chart drawn")
    # the counts sit under the (tall, cropped) snapshot: the picture for the docs is taken in a window tall
    # enough to show them, and only once the chart is inside it
    size = browser.driver.get_window_size()
    browser.driver.set_window_size(size["width"], 3200)
    try:
        assert browser.wait_js(CHART_IN_VIEW, what="the counts chart inside the window")
        fit = browser.driver.execute_script(  # the window down to the chart's bottom and a margin
            "const r = document.querySelector('.vega-embed canvas, .vega-embed svg').getBoundingClientRect();"
            "return Math.ceil(r.bottom + 48 + window.outerHeight - window.innerHeight)")
        browser.driver.set_window_size(size["width"], max(size["height"], fit))
        assert browser.wait_js(CHART_IN_VIEW, what="the counts chart inside the fitted window")
        time.sleep(1.0)  # the table is a canvas redrawn after the resize: a picture at once can catch it half done
        browser.screenshot("cameras")
    finally:
        browser.driver.set_window_size(size["width"], size["height"])


def test_events_page_lists_shows_charts_and_plays_the_clip(browser: Browser, edge_app: StreamlitServer) -> None:
    page(browser, edge_app, "events", "Events")
    browser.wait_text("page 1 ·")
    browser.wait_for('[data-testid="stDataFrame"]')
    browser.wait_text("synthetic-1 · person")  # the snapshot grid's captions: events listed with their pictures
    widths = browser.wait_js(IMG_LOADED, what="every snapshot loaded")
    assert len(widths) >= 4
    assert browser.wait_js(CHART_DRAWN, what="the timeline chart drawn")
    video = browser.wait_for("video")
    browser.driver.execute_script("arguments[0].scrollIntoView(); arguments[0].muted = true; arguments[0].play()",
                                  video)
    played: dict[str, Any] = browser.wait_js(
        "const v = arguments[0]; if (v.error) return {error: v.error.code};"
        " return v.currentTime > 0.3 && {t: v.currentTime, duration: v.duration}", video,
        what="the clip playing")
    assert "error" not in played and played["duration"] > 0, played
    browser.driver.execute_script("window.scrollTo(0, 0)")
    browser.screenshot("events")


def test_models_and_fire_pages(browser: Browser, edge_app: StreamlitServer) -> None:
    page(browser, edge_app, "models", "Models and rollouts")
    assert browser.wait_js(CHART_DRAWN, what="the gate metrics plot drawn")
    browser.wait_text("Pause rollouts")  # on loopback the technician is an operator
    browser.screenshot("models")
    page(browser, edge_app, "fire", "Fire risk")
    browser.wait_text("thermal-1")
    browser.screenshot("fire")


def test_cloud_events_page(browser: Browser, tmp_path: Path) -> None:
    world = CloudWorld(tmp_path)
    try:
        world.real_event("door-b1", time.time() - 300)
        env = {**world.env, "PYTHONPATH": PYTHONPATH}
        with StreamlitServer(APP, env=env, log_path=tmp_path / "streamlit.log") as app:
            page(browser, app, "events", "Events")
            browser.wait_text("door · person")
            assert browser.wait_js(IMG_LOADED, what="the snapshot loaded")
            assert browser.wait_js(CHART_DRAWN, what="the timeline chart drawn")
            browser.wait_text("confirmed")  # the cloud's verdict beside the edge's
            link = browser.wait_js("const a = [...document.querySelectorAll('a')].find(a => a.href.includes("
                                   "'Expires=')); return a && a.href", what="the presigned snapshot link")
            assert link.startswith(world.moto.url) and f"/{SITE}/" in link
            browser.screenshot("events-cloud")
    finally:
        world.stop()
