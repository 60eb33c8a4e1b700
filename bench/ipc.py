"""IPC throughput bench: the real `ggvision nucleus` with real components using GreengrassCoreIPCClientV2.

Each scenario starts a fresh runtime (subprocess) with a publisher component and 0–3 subscriber components,
configured through the recipes' DefaultConfiguration (see bench/components). Components write `ready`
files; the orchestrator then snapshots CPU times, writes the publisher's `go` file, waits for every
`result.json` and snapshots CPU times again.

    .venv/bin/python bench/ipc.py [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil
import yaml
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
COMPONENTS = Path(__file__).resolve().parent / "components"
SCRIPT = "ipc_bench.py"
PUBLISHER = "com.ggvision.bench.Publisher"
SUBSCRIBER = "com.ggvision.bench.Subscriber"
MB = 1024 * 1024

from machine import cpu_model  # noqa: E402 - bench/ is the script's folder


@dataclass(frozen=True)
class Baseline:
    """A figure from the throwaway prototype (docs: ipc-protocol.md, "Measured")."""

    text: str
    value: float | None = None  # comparable rate, when there is one


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    count: int
    quick_count: int
    in_flight: int = 1
    subscribers: int = 0
    fmt: str = "json"
    size: int = 0
    executor: bool = False  # subscribers: run stream callbacks on the client's default thread pool
    target: float | None = None
    baseline: Baseline | None = None

    @property
    def unit(self) -> str:
        if self.subscribers:
            return "deliveries/s"
        return "round trips/s" if self.in_flight <= 1 else "msgs/s"


SCENARIOS = [
    Scenario("sync", "sync publish_to_topic (JSON)", 15_000, 6_000, target=3_000,
             baseline=Baseline("3,000–3,350", 3_175)),
    Scenario("async32", "publish_to_topic_async, 32 in flight", 40_000, 15_000, in_flight=32,
             baseline=Baseline("~9,500", 9_500)),
    Scenario("fanout1", "fan-out → 1 subscriber (JSON)", 40_000, 15_000, in_flight=32, subscribers=1,
             baseline=Baseline("6,280", 6_280)),
    Scenario("fanout3", "fan-out → 3 subscribers (JSON)", 30_000, 12_000, in_flight=32, subscribers=3,
             target=15_000, baseline=Baseline("~15,000", 15_000)),
    Scenario("fanout3pool", "fan-out → 3 subs, callbacks on thread pool", 15_000, 6_000, in_flight=32,
             subscribers=3, executor=True),
    Scenario("json1seq", "small JSON → 1 subscriber, sequential", 10_000, 4_000, subscribers=1,
             baseline=Baseline("2,730", 2_730)),
    Scenario("binary1mb", "1 MB binary → 1 subscriber, sequential", 300, 100, subscribers=1, fmt="binary", size=MB,
             baseline=Baseline("5 MB: 0.16 s one msg")),
]


# -- components -------------------------------------------------------------------------------
def component_recipe(template: str, name: str, config: dict[str, Any]) -> dict[str, Any]:
    """The template recipe renamed to `name`, with the scenario's parameters as DefaultConfiguration."""
    doc = yaml.safe_load((COMPONENTS / "recipes" / f"{template}.yaml").read_text())
    doc["ComponentName"] = name
    defaults = doc["ComponentConfiguration"]["DefaultConfiguration"]
    defaults.update(config)
    policies = defaults["accessControl"]["aws.greengrass.ipc.pubsub"]
    defaults["accessControl"]["aws.greengrass.ipc.pubsub"] = {f"{name}:pubsub:1": p for p in policies.values()}
    return doc


def write_components(sc: Scenario, count: int, recipes: Path, artifacts: Path) -> list[str]:
    """Write the scenario's recipes and artifacts; returns the component names (publisher first)."""
    common = {"scenario": sc.key, "topic": f"bench/ipc/{sc.key}", "count": count, "format": sc.fmt,
              "size": sc.size, "timeout": 60}
    parts = [(PUBLISHER, PUBLISHER, {**common, "role": "publisher", "inFlight": sc.in_flight})]
    sub = {**common, "role": "subscriber", "executor": sc.executor}
    parts += [(SUBSCRIBER, f"{SUBSCRIBER}{i}", sub) for i in range(1, sc.subscribers + 1)]
    recipes.mkdir(parents=True)
    for template, name, config in parts:
        doc = component_recipe(template, name, config)
        (recipes / f"{name}-{doc['ComponentVersion']}.json").write_text(json.dumps(doc))
        art = artifacts / name / str(doc["ComponentVersion"])
        art.mkdir(parents=True)
        shutil.copy(COMPONENTS / SCRIPT, art / SCRIPT)
    return [name for _, name, _ in parts]


# -- runtime ------------------------------------------------------------------------------------
class Runtime:
    """`ggvision nucleus` as a subprocess in a scratch folder (short path: the IPC socket lives in it)."""

    def __init__(self, profile: Path | None = None) -> None:
        self.profile = profile  # write a cProfile of the runtime process here
        self.tmp = Path(tempfile.mkdtemp(prefix="ggvb-", dir="/tmp"))
        self.root = self.tmp / "root"
        self.recipes = self.tmp / "recipes"
        self.artifacts = self.tmp / "artifacts"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"  # recipes run `python3`
        prof = ["-m", "cProfile", "-o", str(self.profile)] if self.profile else []
        cmd = [sys.executable, *prof, "-m", "gglocal.cli", "nucleus", "--root", str(self.root), "--recipes",
               str(self.recipes), "--artifacts", str(self.artifacts), "--no-iot", "--settle", "0.5"]
        with open(self.tmp / "runtime.out", "wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=str(REPO))

    def work(self, name: str) -> Path:
        return self.root / "work" / name

    def check_alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            tail = (self.tmp / "runtime.out").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"runtime exited:\n{tail}")

    def wait_files(self, names: list[str], file: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not all((self.work(n) / file).exists() for n in names):
            self.check_alive()
            if time.monotonic() > deadline:
                missing = [n for n in names if not (self.work(n) / file).exists()]
                logs = {n: (self.root / "logs" / f"{n}.log") for n in missing}
                tails = "".join(f"\n--- {n} ---\n{p.read_text(errors='replace')[-1500:]}"
                                for n, p in logs.items() if p.exists())
                raise TimeoutError(f"no {file} from {missing} within {timeout:.0f}s{tails}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


def cpu_snapshot(pid: int) -> dict[str, float]:
    """user+system CPU seconds of the runtime process alone ("nucleus") and of each component's processes.

    A component's processes (its `sh -c` and the Python it starts) are told apart by their working directory,
    which is the component's work folder.
    """
    server = psutil.Process(pid)
    cpu: dict[str, float] = {}
    for p in server.children(recursive=True):
        try:
            t = p.cpu_times()
            name = Path(p.cwd()).name
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        cpu[name] = cpu.get(name, 0.0) + t.user + t.system
    t = server.cpu_times()
    cpu["nucleus"] = t.user + t.system
    cpu["nucleus.system"] = t.system  # kernel time: syscalls, socket wake-ups
    return cpu


# -- one scenario ---------------------------------------------------------------------------------
def run_scenario(sc: Scenario, quick: bool, profile_dir: Path | None = None) -> dict[str, Any]:
    count = sc.quick_count if quick else sc.count
    rt = Runtime(profile_dir / f"{sc.key}.prof" if profile_dir else None)
    try:
        names = write_components(sc, count, rt.recipes, rt.artifacts)
        rt.start()
        rt.wait_files(names, "ready", 60)
        assert rt.proc is not None
        cpu0 = cpu_snapshot(rt.proc.pid)
        (rt.work(PUBLISHER) / "go").write_text("")
        rt.wait_files(names, "result.json", 120)
        cpu1 = cpu_snapshot(rt.proc.pid)
        results = {n: json.loads((rt.work(n) / "result.json").read_text()) for n in names}
    finally:
        rt.stop()
    cpu = {k: round(cpu1[k] - cpu0.get(k, 0.0), 3) for k in cpu1}
    return summarize(sc, count, results, cpu)


def summarize(sc: Scenario, count: int, results: dict[str, dict[str, Any]], cpu: dict[str, float]) -> dict[str, Any]:
    errors = [e for r in results.values() for e in r.get("error", [])]
    pub = results[PUBLISHER]
    subs = [r for n, r in results.items() if n != PUBLISHER]
    if errors or "first" not in pub:
        return {"scenario": sc.key, "title": sc.title, "error": errors or ["no publisher result"]}
    if subs:
        ends = [r["last"] for r in subs if r["last"] is not None]
        end = max(ends) if ends else pub["done"]
        received = sum(r["received"] for r in subs)
        nbytes = sum(r["bytes"] for r in subs)
    else:
        end, received, nbytes = pub["done"], count, count * sc.size
    elapsed = end - pub["first"]
    rate = received / elapsed
    server_cpu, server_sys = cpu.pop("nucleus"), cpu.pop("nucleus.system")
    comp_cpu = sum(cpu.values())
    total_cpu = server_cpu + comp_cpu
    return {
        "scenario": sc.key, "title": sc.title, "messages": count, "in_flight": sc.in_flight,
        "subscribers": sc.subscribers, "format": sc.fmt, "size": sc.size, "elapsed_s": round(elapsed, 4),
        "unit": sc.unit, "rate": round(rate, 1), "msgs_per_s": round(count / elapsed, 1),
        "mb_per_s": round(nbytes / elapsed / MB, 1) if sc.size else None,
        "delivered": received if subs else None, "lost": count * len(subs) - received if subs else None,
        "server_cpu_s": round(server_cpu, 3), "server_system_s": round(server_sys, 3),
        "components_cpu_s": round(comp_cpu, 3),
        "cpu_s_by_component": {k.removeprefix("com.ggvision.bench."): v for k, v in sorted(cpu.items())},
        "server_cpu_share": round(server_cpu / total_cpu, 3) if total_cpu else None,
        "server_us_per_msg": round(server_cpu / count * 1e6, 1),
        "target": sc.target, "target_met": rate >= sc.target if sc.target else None,
        "baseline": asdict(sc.baseline) if sc.baseline else None,
        "ratio_to_baseline": round(rate / sc.baseline.value, 2) if sc.baseline and sc.baseline.value else None,
    }


def run_repeated(sc: Scenario, quick: bool, repeat: int, profile_dir: Path | None) -> dict[str, Any]:
    """The median run by rate (this VM's figures vary by ±30% between runs); every run's rate in "runs"."""
    runs = []
    for _ in range(max(1, repeat)):
        try:
            runs.append(run_scenario(sc, quick, profile_dir))
        except Exception as e:  # report the failed scenario and go on with the others
            runs.append({"scenario": sc.key, "title": sc.title, "error": [str(e)]})
    ok = sorted((r for r in runs if "error" not in r), key=lambda r: r["rate"])
    if not ok:
        return runs[0]
    return {**ok[len(ok) // 2], "runs": [r["rate"] for r in ok], "failed_runs": len(runs) - len(ok)}


# -- report ---------------------------------------------------------------------------------------
def machine_facts() -> dict[str, Any]:
    model = cpu_model()
    return {"cpu_count": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
            "platform": platform.platform(), "awsiotsdk": metadata.version("awsiotsdk"),
            "awscrt": metadata.version("awscrt"), "loadavg_1m_at_start": round(os.getloadavg()[0], 2)}


def fmt_num(v: float | None, digits: int = 0) -> str:
    return "–" if v is None else f"{v:,.{digits}f}"


def render(results: list[dict[str, Any]], machine: dict[str, Any], console: Console) -> None:
    table = Table(title=f"ggvision IPC bench — {machine['cpu_count']} CPU {machine['cpu_model']}, "
                        f"Python {machine['python']}, awsiotsdk {machine['awsiotsdk']}")
    for col in ("Scenario", "Msgs", "Elapsed s", "Rate", "Unit", "MB/s", "Lost", "Server CPU", "Server µs/msg",
                "Target", "Prototype", "× proto"):
        table.add_column(col, justify="left" if col in ("Scenario", "Unit", "Prototype") else "right")
    for r in results:
        if "error" in r:
            table.add_row(r["title"], *[""] * 10, f"[red]FAILED: {r['error'][0][:60]}[/red]")
            continue
        target = "–"
        if r["target"]:
            target = f"{'[green]✓' if r['target_met'] else '[red]✗'} ≥{r['target']:,.0f}[/]"
        share = r["server_cpu_share"]
        table.add_row(r["title"], fmt_num(r["messages"]), f"{r['elapsed_s']:.2f}", fmt_num(r["rate"]), r["unit"],
                      fmt_num(r["mb_per_s"], 1), fmt_num(r["lost"]), "–" if share is None else f"{share:.0%}",
                      fmt_num(r["server_us_per_msg"], 1), target,
                      r["baseline"]["text"] if r["baseline"] else "–", fmt_num(r["ratio_to_baseline"], 2))
    console.print(table)
    console.print("Server CPU: user+system time of the `ggvision nucleus` process ÷ that of the nucleus plus all bench "
                  "component processes, over the measured window. × proto: rate ÷ prototype figure (range midpoint). "
                  "Prototype server CPU: ~84 µs/request.")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller message counts (about 20 s)")
    ap.add_argument("--json", type=Path, help="also write machine-readable results here")
    ap.add_argument("--repeat", type=int, default=1, metavar="N", help="run each scenario N times; report the median")
    ap.add_argument("--profile", type=Path, metavar="DIR",
                    help="run the runtime under cProfile; writes DIR/<scenario>.prof (skews the figures)")
    ap.add_argument("--only", nargs="*", choices=[s.key for s in SCENARIOS], help="run only these scenarios")
    args = ap.parse_args(argv)
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    console = Console(width=None if sys.stdout.isatty() else 170)
    machine = machine_facts()
    results = []
    started = time.monotonic()
    for sc in SCENARIOS:
        if not args.only or sc.key in args.only:
            console.print(f"[dim]running {sc.key}…[/dim]")
            results.append(run_repeated(sc, args.quick, args.repeat, args.profile))
    render(results, machine, console)
    console.print(f"[dim]total {time.monotonic() - started:.0f}s[/dim]")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "quick": args.quick, "repeat": args.repeat,
                                          "results": results}, indent=2))
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
