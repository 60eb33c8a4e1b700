"""docs/dashboard.md holds: every setting it names is read by the code, every picture it links exists (the browser
test's screenshots), and the figures it states are the code's constants."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from harness import REPO

DOC = (REPO / "docs" / "dashboard.md").read_text()
CODE = "\n".join(p.read_text() for d in ("dashboard", "ggvision_cli") for p in (REPO / d).rglob("*.py"))


def constants(path: str) -> dict[str, object]:
    out = {}
    for node in ast.parse((REPO / path).read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    return out


def test_every_setting_the_doc_names_is_read() -> None:
    named = set(re.findall(r"GGVISION_DASHBOARD_[A-Z_]+", DOC))
    assert len(named) >= 10
    access = {f"GGVISION_DASHBOARD_{f.upper()}" for f in re.findall(r"^    (\w+): ", (
        REPO / "dashboard" / "access.py").read_text(), re.M)}  # AccessSettings' fields, read by from_env
    missing = sorted(n for n in named if n not in CODE and n not in access)
    assert not missing, missing


def test_every_picture_the_doc_links_exists() -> None:
    links = re.findall(r"\]\((img/dashboard/[\w.-]+\.png)\)", DOC)
    assert {Path(p).stem for p in links} >= {"fleet", "cameras", "events", "events-cloud", "models", "fire"}
    for p in links:
        assert (REPO / "docs" / p).stat().st_size > 10_000, p


def test_the_figures_the_doc_states_are_the_codes() -> None:
    events = constants("dashboard/views/events.py")
    assert (events["GRID"], events["TIMELINE_MAX"]) == (12, 500)
    assert "up to 12 snapshots" in DOC and "newest 500" in DOC
    assert constants("dashboard/data/base.py")["PAGE_SIZE"] == 50 and "50 a page" in DOC
    assert constants("dashboard/data/cloud.py")["PRESIGN_MAX_S"] == 300 and "1..300 s" in DOC
    assert constants("dashboard/data/cloud.py")["OFFLINE_AFTER_S"] == 180 and "for 3 minutes" in DOC
    assert 1 / constants("dashboard/views/cameras.py")["LIVE_PERIOD_S"] == 2 and "2 frames a second" in DOC
    assert "## Dashboard page load (`bench/dashboard.py`" in (REPO / "docs" / "performance.md").read_text()
    assert "\ndashboard: $(STAMP)\n\t$(BIN)/ggvision dashboard --root $(ROOT)" in (REPO / "Makefile").read_text()
