"""`ggvision uplink status`: the queue's backlog read straight from its index (read-only; no IPC needed, so it
works on a device whose runtime or uplink is down)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from . import PRIORITIES
from .queue import open_readonly, read_stats

app = typer.Typer(help="The Uplink component's store-and-forward queue", no_args_is_help=True)
console = Console()
COMPONENT = "com.ggvision.Uplink"
DEFAULT_ROOT = Path(os.environ.get("GGVISION_ROOT", ".ggvision/root"))


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _age(s: float | None) -> str:
    if s is None:
        return "unknown"
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def status_of(queue: Path) -> dict[str, Any]:
    db = open_readonly(queue)
    try:
        s = read_stats(db, time.time())
    finally:
        db.close()
    backlog = sum(s["backlog_bytes"].values())
    st = s.pop("state")
    rate = float(st.get("rate_bytes_per_s") or 0) or float(st.get("bandwidth_kbps") or 0) * 125.0
    s.update(disk_budget=st.get("disk"), online=st.get("online", {}), last_error=st.get("last_error", ""),
             sink=st.get("sink", ""),
             rate_bytes_per_s=rate, state_age_s=time.time() - st["updated"] if "updated" in st else None,
             bytes_queued=backlog, drain_eta_s=backlog / rate if rate and backlog else (0.0 if not backlog else None))
    return s


@app.command("status")
def status(
    queue: Annotated[Path | None, typer.Option(help="queue folder (default: <root>/work/com.ggvision.Uplink/queue)")]
    = None,
    root: Annotated[Path, typer.Option(help="runtime root folder (GGVISION_ROOT)")] = DEFAULT_ROOT,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of tables")] = False,
) -> None:
    """Backlog per priority and camera, oldest item, bytes queued, last error, estimated drain time."""
    path = queue or root / "work" / COMPONENT / "queue"
    try:
        s = status_of(path)
    except (FileNotFoundError, OSError) as e:
        console.print(f"[red]ggvision uplink status: {e}[/red]")
        raise typer.Exit(2) from None
    if as_json:
        print(json.dumps(s, indent=1, sort_keys=True))
        return
    t = Table("priority", "items", "bytes", "evicted", title=f"uplink queue {path}")
    for p in PRIORITIES:
        t.add_row(p, str(s["backlog_items"][p]), _size(s["backlog_bytes"][p]), str(s["evicted"][p]))
    console.print(t)
    if s["cameras"]:
        c = Table("camera", *PRIORITIES, "bytes")
        for cam, v in sorted(s["cameras"].items()):
            c.add_row(cam, *(str(v["by_priority"].get(p, {}).get("items", 0)) for p in PRIORITIES),
                      _size(v["bytes"]))
        console.print(c)
    links = ", ".join(f"{k}: {'online' if v else 'offline' if v is False else 'not tried'}"
                      for k, v in s["online"].items()) or "unknown (never ran)"
    console.print(f"bytes queued: {_size(s['bytes_queued'])}   oldest item: {_age(s['oldest_age_s'])}   "
                  f"uploaded: {s['uploaded_items']} items / {_size(s['uploaded_bytes'])}")
    console.print(f"links: {links}   (as of {_age(s['state_age_s'])} ago)")
    eta = s["drain_eta_s"]
    console.print(f"estimated drain time: {_age(eta) if eta is not None else 'unknown (no rate measured yet)'}"
                  + (f" at {_size(s['rate_bytes_per_s'])}/s" if s["rate_bytes_per_s"] else ""))
    b = s["disk_budget"]
    if b:  # Health's latest disk-budget/1.0, as the Uplink last applied it
        cap = f"budget {_size(b['budget_bytes'])}, " if b.get("budget_bytes") else ""
        color = {"ok": "green", "low": "yellow"}.get(b.get("level"), "red")
        console.print(f"disk budget: [{color}]{b.get('level')}[/{color}]   used {_size(b['used_bytes'])} ({cap}"
                      f"free {_size(b['free_bytes'])}, reserve {_size(b['reserve_bytes'])})   headroom "
                      f"{'-' if b['headroom_bytes'] < 0 else ''}{_size(abs(b['headroom_bytes']))}   "
                      f"(as of {_age(time.time() - b['timestamp'])} ago)")
        if s["budget_evicted_bytes"]:
            console.print("given up for the disk budget: " + ", ".join(
                f"{k} {_size(v)}" for k, v in s["budget_evicted_bytes"].items()))
    else:
        console.print("disk budget: not known yet (com.ggvision.Health announces it)")
    if s["last_error"]:
        console.print(f"[yellow]last error: {s['last_error']}[/yellow]")
    if s["evicted_by_reason"]:
        reasons = sorted(s["evicted_by_reason"].items())
        console.print("evictions by reason: " + ", ".join(f"{k} {v}" for k, v in reasons))
    for lane, v in s["links"].items():  # the lanes' own outcomes, when something was retried or refused
        if v["retried_items"] or v["rejected_items"] or v["reordered_items"]:
            console.print(f"{lane}: {v['delivered_items']} delivered, {v['retried_items']} retried, "
                          f"{v['rejected_items']} rejected, {v['reordered_items']} reordered")
