"""The dashboard's screenshots for the docs: the browser tests run, and every picture they take is saved here.

    .venv/bin/python bench/screenshots.py                  # docs/img/dashboard/*.png, about a minute
    .venv/bin/python bench/screenshots.py --out /tmp/shots # somewhere else

It runs the dashboard's browser tests (tests/test_dashboard*.py: every test of test_dashboard_browser.py, the
pages in chromium, and elsewhere those whose name says `chromium`) with
GGVISION_SCREENSHOTS set to the output folder, so each `Browser.screenshot(name)` (tests/browser_dev.py) lands
there as `name.png` instead of the test's tmp folder: a picture the docs link is one a passing test took after it
checked what the page shows. Then it lists the pictures the docs link (`img/dashboard/*.png` in docs/*.md) and says
which are missing — not there, or not taken again by this run (a stale picture of an older page) — and which no doc
links. Exit status: pytest's, or 1 when a linked picture is missing.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "docs" / "img" / "dashboard"
LINK_RE = re.compile(r"img/dashboard/([A-Za-z0-9_.-]+\.png)")


def linked_pictures(docs: Path = REPO / "docs") -> dict[str, list[str]]:
    """Picture name -> the docs that link it."""
    out: dict[str, list[str]] = {}
    for md in sorted(docs.rglob("*.md")):
        for name in LINK_RE.findall(md.read_text()):
            out.setdefault(name, []).append(md.relative_to(REPO).as_posix())
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"where the PNGs go (default {DEFAULT_OUT})")
    args = p.parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GGVISION_SCREENSHOTS": str(out)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), str(REPO / "tests"), env.get("PYTHONPATH")]))
    tests = sorted(str(t.relative_to(REPO)) for t in (REPO / "tests").glob("test_dashboard*.py"))
    # -k matches the module's name too: test_dashboard_browser's tests do not say chromium in their own
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "chromium or test_dashboard_browser",
           *tests]
    print("$ GGVISION_SCREENSHOTS=" + str(out), " ".join(cmd[2:]), flush=True)
    started = time.time() - 1  # mtimes are whole seconds on some filesystems
    rc = subprocess.run(cmd, cwd=REPO, env=env, check=False).returncode
    taken = {p.name for p in out.glob("*.png") if p.stat().st_mtime >= started}
    print(f"\n{len(taken)} screenshots taken in {out}:")
    for name in sorted(taken):
        print(f"  {name}  ({(out / name).stat().st_size // 1024} KiB)")
    if out != DEFAULT_OUT.resolve():
        return rc
    links = linked_pictures()
    missing = sorted(set(links) - taken)
    for name in missing:
        stale = " (an old picture: no test took it this time)" if (out / name).exists() else ""
        print(f"MISSING {name}{stale}, linked from {', '.join(links[name])}")
    for name in sorted(taken - set(links)):
        print(f"unlinked {name} (no doc shows it)")
    return rc or (1 if missing else 0)


if __name__ == "__main__":
    sys.exit(main())
