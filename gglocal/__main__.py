"""`python -m gglocal`: the runtime's command line."""

from .cli import app

app()
