"""`python -m ggvision_cli`: the `ggvision` command."""

from . import app

app()
