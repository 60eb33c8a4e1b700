"""``rollout ab``: start, status, report, promote, stop an A/B experiment (rollout/ab.py, docs/rollout.md)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from .ab import AbError, Experiment, Experiments, parse_duration, parse_share
from .abreport import FAIL, PASS, Report
from .backends import make_backend
from .backends.base import BackendError
from .config import ConfigError, load_config

app = typer.Typer(help="A/B experiments: a candidate version B beside the serving A on a stage, judged by a report",
                  no_args_is_help=True)
console = Console()
err = Console(stderr=True)
WaitOpt = Annotated[float | None, typer.Option(
    "--wait", help="seconds to collect summaries first (default: 10 with the local backend, which only hears "
                   "summaries while connected; 0 with aws)")]


def _config(ctx: typer.Context) -> Path:
    return (ctx.obj or {}).get("config") or Path(os.environ.get("ROLLOUT_CONFIG", "rollout.yaml"))


@app.callback()
def _main(ctx: typer.Context, config: Annotated[Path | None, typer.Option("--config", "-c",
                                                                          help="rollout.yaml (ROLLOUT_CONFIG)")] = None
          ) -> None:
    ctx.obj = {"config": config}


def _run(ctx: typer.Context, fn: object) -> None:
    try:
        cfg = load_config(_config(ctx))
        backend = make_backend(cfg)
    except (ConfigError, BackendError) as e:
        err.print(f"[red]error:[/red] {e}", highlight=False)
        raise typer.Exit(1) from None
    try:
        fn(Experiments(cfg, backend, console=console), cfg)  # type: ignore[operator]
    except (AbError, ConfigError, BackendError) as e:
        err.print(f"[red]error:[/red] {e}", highlight=False)
        raise typer.Exit(1) from None
    finally:
        backend.close()


def _wait(cfg: object, wait: float | None) -> float:
    return wait if wait is not None else (10.0 if getattr(cfg, "backend", "") == "local" else 0.0)


@app.command()
def start(ctx: typer.Context, model: str, version: str, stage: Annotated[str, typer.Option("--stage")],
          mode: Annotated[str, typer.Option("--mode", help="shadow | split")] = "shadow",
          share: Annotated[str | None, typer.Option("--share", help="split: share of cameras B serves, 20% or "
                                                                     "0.2 (by the sha256 of the camera id)")] = None,
          sample_rate: Annotated[float | None, typer.Option("--sample-rate", help="shadow: share of A's frames "
                                                                                   "B sees (ab.sample_rate)")] = None,
          duration: Annotated[str, typer.Option("--for", help="how long the experiment runs: 90s, 15m, 24h, 2d")]
          = "24h") -> None:
    """Deploy VERSION as arm B beside the stage's serving version (A)."""
    def go(x: Experiments, _cfg: object) -> None:
        x.start(model, version, stage, mode, parse_share(share) if share is not None else None,
                parse_duration(duration), sample_rate)

    _run(ctx, go)


@app.command()
def stop(ctx: typer.Context, model: str, reason: Annotated[str, typer.Option()] = "stopped by hand") -> None:
    """Remove B: the stage's deployment without the candidate component and without models.<id>.b."""
    _run(ctx, lambda x, _c: x.stop(model, reason))


@app.command()
def status(ctx: typer.Context, model: Annotated[str | None, typer.Argument()] = None) -> None:
    """Experiments: versions, stage, mode, time left, last verdict; per device whether B is installed."""
    def go(x: Experiments, _cfg: object) -> None:
        table = Table(title="A/B experiments")
        for col in ("id", "model", "B", "A", "stage", "mode", "status", "started", "ends", "verdict"):
            table.add_column(col)
        exps = x.all(model)
        for e in exps:
            left = e.ends - time.time()
            ends = _when(e.ends) + (f" ({_dur(left)} left)" if e.status == "running" and left > 0 else
                                    " (over: report, promote or stop)" if e.status == "running" else "")
            mode = e.mode + (f" {e.spec['share']:.0%}" if e.mode == "split" else
                             f" @{e.spec.get('sampleRate', 0):g}")
            table.add_row(e.id, e.model, e.version, e.a_version, e.stage, mode, e.status, _when(e.started), ends,
                          e.doc.get("verdict") or "-")
        console.print(table)
        run = [e for e in exps if e.status == "running"]
        if run:
            dev = Table(title="devices")
            for col in ("device", "experiment", "B component installed"):
                dev.add_column(col)
            for e in run:
                for t in x.backend.devices(e.group):
                    dev.add_row(t, e.id, x.backend.device_status(t, "").components.get(e.b_component, "-"))
            console.print(dev)

    _run(ctx, go)


@app.command()
def report(ctx: typer.Context, model: str, wait: WaitOpt = None) -> None:
    """Per label B − A with a bootstrap CI, latency and error deltas, and the verdict against ab.gates.
    Exit code 0 PASS, 3 FAIL, 4 INCONCLUSIVE."""
    verdict: list[str] = []

    def go(x: Experiments, cfg: object) -> None:
        exp, rep = x.report(model, _wait(cfg, wait))
        print_report(console, exp, rep, x.ab.bootstrap.confidence)
        verdict.append(rep.verdict)

    _run(ctx, go)
    raise typer.Exit({PASS: 0, FAIL: 3}.get(verdict[0], 4))


@app.command()
def promote(ctx: typer.Context, model: str,
            to: Annotated[str | None, typer.Option("--to", help="last stage of the staged rollout (default: the "
                                                                 "experiment's stage)")] = None,
            force: Annotated[bool, typer.Option(help="promote even when the report does not PASS")] = False,
            wait: WaitOpt = None) -> None:
    """When the report passes: remove B and hand VERSION to the normal staged rollout (promote stage by stage)."""
    ok: list[bool] = []

    def go(x: Experiments, cfg: object) -> None:
        ok.append(x.promote(model, to, force, _wait(cfg, wait)))

    _run(ctx, go)
    raise typer.Exit(0 if ok[0] else 3)


def print_report(out: Console, exp: Experiment, rep: Report, confidence: float) -> None:
    share = f" {exp.spec['share']:.0%} of cameras" if exp.mode == "split" else \
        f", sample rate {exp.spec.get('sampleRate', 0):g}"
    out.print(f"experiment {exp.id}: {exp.model} {exp.version} (B) vs {exp.a_version} (A) on {exp.group}, "
              f"{exp.mode}{share}; {rep.summaries} summaries from {len(rep.devices)} device(s), "
              f"{rep.intervals} paired intervals", highlight=False)
    t = Table(title="detections per frame, B − A")
    cols = ["label", "A", "B", "B − A", f"{confidence:.0%} CI", "vs A", "limits", "gate"]
    if rep.mode == "shadow":
        cols[7:7] = ["matched", "flips", "A only", "B only"]
    for c in cols:
        t.add_column(c)
    for d in rep.labels:
        row = [d.label, f"{d.a_rate:.3f}", f"{d.b_rate:.3f}", f"{d.diff:+.3f}", f"[{d.ci[0]:+.3f}, {d.ci[1]:+.3f}]",
               f"{d.relative:+.0%}" if d.relative is not None else "-",
               f"[{d.limits[0]:+.3f}, {d.limits[1]:+.3f}]", d.status]
        if rep.mode == "shadow":
            row[7:7] = [f"{d.agreement.get(k, 0):g}" for k in ("matched", "label_flips", "a_only", "b_only")]
        t.add_row(*row)
    out.print(t)
    lat, er = rep.latency, rep.errors
    out.print(f"latency p95: A {_ms(lat['a_p95_ms'])}, B {_ms(lat['b_p95_ms'])}"
              + (f" ({lat['delta_ms']:+.2f} ms, {lat['ratio']:.2f}x)" if lat["ratio"] is not None else ""),
              highlight=False)
    out.print(f"errors: A {_ratio(er['a_error_ratio'])}, B {_ratio(er['b_error_ratio'])}"
              + (f" ({er['delta']:+.3f})" if er["delta"] is not None else "") + f"; B failed batches {er['b_failed']:g}"
              + (f"; shadow agreement {rep.agreement:.2f}" if rep.agreement is not None else ""), highlight=False)
    for c in rep.checks:
        style = {"PASS": "green", "FAIL": "red"}.get(c.status, "yellow")
        out.print(f"  [{style}]{c.status:>12}[/{style}] {c.gate}: {c.detail}", highlight=False)
    style = {"PASS": "green", "FAIL": "red"}.get(rep.verdict, "yellow")
    out.print(f"verdict: [{style}]{rep.verdict}[/{style}]", highlight=False)


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f} ms"


def _ratio(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _dur(s: float) -> str:
    return f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.0f} min" if s >= 60 else f"{s:.0f} s"


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))
