"""The ggvision dashboard (Streamlit): `streamlit run dashboard/app.py`, or `ggvision dashboard` / `make dashboard`.

Who may see it is decided first (access.gate: loopback or a password on the edge, the load balancer's signed header
in the cloud); then the five pages read one data source (GGVISION_DASHBOARD_BACKEND: edge or cloud, docs/dashboard.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

if __package__ in (None, ""):  # `streamlit run dashboard/app.py` runs this file as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dashboard.access import AccessSettings, gate  # noqa: E402
from dashboard.context import IDENTITY, source  # noqa: E402

# Not "pages/": Streamlit would serve a pages/ folder's files as pages of their own, run without app.py (no gate)
VIEWS = Path(__file__).resolve().parent / "views"

st.set_page_config(page_title="ggvision", layout="wide")
try:
    settings = AccessSettings.from_env()
except ValueError as e:
    st.error(str(e))
    st.stop()
ident = gate(settings)
if ident is None:
    st.stop()
st.session_state[IDENTITY] = ident
try:
    src = source()
except ValueError as e:
    st.error(str(e))
    st.stop()
st.sidebar.caption(f"{src.name} backend · {ident.user} ({ident.role})")
st.navigation([
    st.Page(VIEWS / "fleet.py", title="Fleet", url_path="fleet", default=True),
    st.Page(VIEWS / "cameras.py", title="Site / camera", url_path="cameras"),
    st.Page(VIEWS / "events.py", title="Events", url_path="events"),
    st.Page(VIEWS / "models.py", title="Models and rollouts", url_path="models"),
    st.Page(VIEWS / "fire.py", title="Fire risk", url_path="fire"),
]).run()
