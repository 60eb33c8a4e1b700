"""The `ggvision` command: the local runtime's commands (gglocal.cli) plus the product's own tools
(`ggvision uplink status`, `ggvision site ...`, `ggvision dashboard`) and `ggvision run`, which starts the local
cloud and the runtime. The one place that sees both wings; it only wires commands together."""

from __future__ import annotations

import typer

from gglocal.cli import app as runtime_app
from ggvision.uplink.cli import app as uplink_app
from sites.camera_cli import app as camera_app
from sites.cli import app as site_app

from .dashboard import dashboard
from .run import run

app = typer.Typer(help="ggvision: edge video analytics on AWS IoT Greengrass v2 — the local runtime and the "
                  "suite's tools", no_args_is_help=True)
app.add_typer(runtime_app)  # nucleus, deployment, component, build, publish, fleet
app.add_typer(uplink_app, name="uplink")  # `ggvision uplink status`
app.add_typer(site_app, name="site")  # `ggvision site validate|plan`
app.add_typer(camera_app, name="camera")  # `ggvision camera probe|add`
app.command("run")(run)  # `make run`: the local cloud, then the runtime
app.command("dashboard")(dashboard)  # `make dashboard`: the Streamlit app on a root's data

__all__ = ["app"]
