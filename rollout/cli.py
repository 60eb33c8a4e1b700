"""``python -m rollout`` (console script ``rollout``): plan, promote, rollback, pause, resume, status, history, and
``ab`` (A/B experiments: rollout/abcli.py)."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from .backends import make_backend
from .backends.base import Backend, BackendError
from .config import ConfigError, RolloutConfig, load_config
from .engine import Engine, RolloutError, model_component
from .state import StateFile

app = typer.Typer(help="Promote model versions dev → staging → production with canary, health gates and "
                       "automatic rollback", no_args_is_help=True)
console = Console()
err = Console(stderr=True)

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="rollout.yaml (ROLLOUT_CONFIG)")]
DEFAULT_CONFIG = Path(os.environ.get("ROLLOUT_CONFIG", "rollout.yaml"))


def _fail(e: Exception) -> None:
    err.print(f"[red]error:[/red] {e}", highlight=False)
    raise typer.Exit(1)


def _setup(config: Path) -> tuple[RolloutConfig, Backend, Engine]:
    try:
        cfg = load_config(config)
        backend = make_backend(cfg)
    except (ConfigError, BackendError) as e:
        _fail(e)
        raise
    return cfg, backend, Engine(cfg, backend, console=console)


def _when(t: float | None) -> str:
    return dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S") if t else "-"


@app.command()
def plan(model: str, version: str, to: Annotated[str | None, typer.Option("--to")] = None,
         config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """The steps a promote would take: stages, targets, devices, soak times, gates."""
    cfg, backend, engine = _setup(config)
    try:
        steps = engine.plan(model, version, to)
    except (ConfigError, BackendError) as e:
        _fail(e)
        return
    finally:
        backend.close()
    table = Table(title=f"plan: {model} {version} ({model_component(model)})")
    for col in ("stage", "step", "thing group", "devices", "runs now", "soak"):
        table.add_column(col)
    for s in steps:
        table.add_row(s.stage, s.kind, s.target, str(len(s.devices)), s.current or "-", f"{s.soak_s:g} s")
    console.print(table)
    g = cfg.gates
    console.print(f"gates: error ratio <= {g.error_ratio_max} (+{g.error_ratio_max_increase} vs previous), "
                  f"p95 <= {g.p95_ratio_max}x previous" + (f" and {g.p95_ms_max} ms" if g.p95_ms_max else "")
                  + f", detection fps >= {g.fps_ratio_min}x previous, |score drift| <= {g.score_drift_max}, "
                  f"deployment failures <= {g.deployment_failures_max}; {g.min_samples} summaries per device",
                  highlight=False)


@app.command()
def promote(model: str, version: str, to: Annotated[str, typer.Option("--to", help="dev | staging | production")],
            force: Annotated[bool, typer.Option(help="skip the previous-stage check")] = False,
            config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Deploy to the stage's canary, soak, check gates, then the whole group; roll back on failure."""
    _, backend, engine = _setup(config)
    try:
        ok = engine.promote(model, version, to, force=force)
    except (RolloutError, ConfigError, BackendError) as e:
        _fail(e)
        return
    finally:
        backend.close()
    raise typer.Exit(0 if ok else 3)


@app.command()
def rollback(model: str, stage: Annotated[str, typer.Option("--stage")],
             reason: Annotated[str, typer.Option()] = "manual rollback", config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Redeploy the revision the stage's last promote replaced."""
    _, backend, engine = _setup(config)
    try:
        engine.rollback(model, stage, reason)
    except (RolloutError, ConfigError, BackendError) as e:
        _fail(e)
    finally:
        backend.close()


def _state(config: Path) -> tuple[RolloutConfig, StateFile]:
    try:
        cfg = load_config(config)
    except ConfigError as e:
        _fail(e)
        raise
    return cfg, StateFile(cfg.state_file)


@app.command()
def pause(stage: Annotated[str, typer.Option("--stage", help="a stage, or * for all")] = "*",
          config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Hold rollouts at a stage: a running promote waits before its next step; new ones are refused."""
    cfg, state = _state(config)
    if stage != "*":
        cfg.stage(stage)
    state.set_paused(stage, True)
    console.print(f"paused {stage}")


@app.command()
def resume(stage: Annotated[str, typer.Option("--stage")] = "*", config: ConfigOpt = DEFAULT_CONFIG) -> None:
    """Let paused rollouts go on."""
    _, state = _state(config)
    state.set_paused(stage, False)
    console.print(f"resumed {stage}")


@app.command()
def status(model: str, config: ConfigOpt = DEFAULT_CONFIG,
           devices: Annotated[bool, typer.Option(help="per-device table")] = True) -> None:
    """Per stage (version, last result) and per device (deployment status, installed and reported version)."""
    cfg, backend, _ = _setup(config)
    state = StateFile(cfg.state_file)
    component = model_component(model)
    try:
        table = Table(title=f"{model} ({component})")
        for col in ("stage", "thing group", "deployed", "last result", "reason", "paused", "updated"):
            table.add_column(col)
        dev_table = Table(title="devices")
        for col in ("device", "group", "deployment", "status", "installed", "reported", "p95 ms", "errors"):
            dev_table.add_column(col)
        from .gates import sample

        if devices and getattr(backend, "wait", None) is not None and cfg.backend == "local":
            # The local backend collects summaries from the moment it connects: give each device one period.
            import time

            things = {t for st_ in cfg.stages for g in [st_.group] for t in backend.devices(g)}
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline and {d.get("thing") for d in backend.health(sorted(things), 0.0)} \
                    < things:
                backend.wait(0.5)
        for stage in cfg.stages:
            st = state.stage(model, stage.name)
            cur = backend.current(stage.group)
            table.add_row(stage.name, stage.group, (cur.version_of(component) if cur else None) or "-",
                          st.get("status", "-"), (st.get("reason") or "")[:80], "yes" if state.paused(stage.name)
                          else "", _when(st.get("updated")))
            if not devices:
                continue
            groups = [stage.group] + ([stage.canary.group] if stage.canary else [])
            seen: set[str] = set()
            for g in groups:
                for thing in backend.devices(g):
                    if thing in seen:
                        continue
                    seen.add(thing)
                    ds = backend.device_status(thing, "")
                    last = backend.health([thing], 0.0)
                    s = sample(last[-1], model) if last else None
                    dev_table.add_row(thing, ",".join(x for x in groups if thing in backend.devices(x)),
                                      (ds.deployment_id or "-")[:12], ds.status, ds.components.get(component, "-"),
                                      (s.version if s else None) or "-",
                                      f"{s.p95_ms:.1f}" if s and s.p95_ms is not None else "-",
                                      f"{s.error_ratio:.3f}" if s and s.error_ratio is not None else "-")
    except BackendError as e:
        _fail(e)
        return
    finally:
        backend.close()
    console.print(table)
    if devices:
        console.print(dev_table)


@app.command()
def history(model: Annotated[str | None, typer.Argument()] = None, config: ConfigOpt = DEFAULT_CONFIG,
            events: Annotated[bool, typer.Option(help="show each rollout's events")] = False) -> None:
    """Every promote and rollback, with the reason when one was stopped."""
    _, state = _state(config)
    table = Table(title="rollout history")
    for col in ("id", "kind", "model", "version", "stage", "status", "started", "took", "reason"):
        table.add_column(col)
    rollouts = state.rollouts(model)
    for r in rollouts:
        took = f"{r['ended'] - r['started']:.0f} s" if r.get("ended") else "-"
        table.add_row(r["id"], r["kind"], r["model"], r["version"], r["stage"], r["status"], _when(r["started"]),
                      took, r.get("reason", ""))
    console.print(table)
    if events:
        for r in rollouts:
            console.print(f"[bold]{r['id']}[/bold] {r['kind']} {r['model']} {r['version']} -> {r['stage']}")
            for e in r["events"]:
                console.print(f"  {_when(e['t'])} {e['event']:>18} {e['detail']}", highlight=False)


from .abcli import app as ab_app  # noqa: E402  (it reads _setup and DEFAULT_CONFIG from here when called)

app.add_typer(ab_app, name="ab")


def main() -> None:
    app()
