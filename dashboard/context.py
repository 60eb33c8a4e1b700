"""What every page shares in one browser session: the data source (one per server process: boto3 clients and
attached frame rings are reused) and the user's identity, which app.py puts in the session before any page runs."""

from __future__ import annotations

import os

import streamlit as st

from .access import Identity
from .data.base import DataSource
from .data.rollouts import Rollouts
from .source import open_source

IDENTITY = "ggvision_identity"


@st.cache_resource(show_spinner=False)
def _source(settings: tuple[tuple[str, str], ...]) -> DataSource:
    return open_source(dict(settings))


def _settings() -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(("GGVISION_", "AWS_"))))


def source() -> DataSource:
    return _source(_settings())


def rollouts() -> Rollouts | None:
    return Rollouts.from_env()


def identity() -> Identity:
    ident = st.session_state.get(IDENTITY)
    # By its fields, not its class: a server that re-imported dashboard.access (a code change) holds another class.
    # Absent: a view run without app.py's gate; refuse rather than show anything.
    if getattr(ident, "role", None) not in ("viewer", "operator"):
        st.error("Not signed in.")
        st.stop()
    return ident  # type: ignore[return-value]


def is_operator() -> bool:
    return identity().role == "operator"
