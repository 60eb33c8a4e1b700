"""Fire risk: each thermal sensor's latest frame as a heat map, its features, and the risk probability over time."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import render
from dashboard.context import source

st.title("Fire risk")
src = source()
views = src.fire()
if not views:
    st.info("No thermal sensor on this backend: thermal frames and fire-risk outputs stay on the box "
            "(use the edge backend there).")
    st.stop()
for v in views:
    st.subheader(v.sensor)
    left, right = st.columns(2)
    with left:
        if v.frame is None:
            st.caption("No live thermal frame: Capture is not running this sensor on this box.")
        else:
            st.altair_chart(render.heatmap(v.frame), width="stretch")
    with right:
        if v.features:
            st.dataframe(pd.DataFrame({"feature": list(v.features), "value": list(v.features.values())}),
                         hide_index=True)
    if v.history:
        df = pd.DataFrame([{"time": pd.Timestamp(t, unit="s", tz="UTC"), "probability": p} for t, p in v.history])
        st.altair_chart(alt.Chart(df, title="fire probability").mark_line().encode(x="time:T", y="probability:Q"),
                        width="stretch")
    if v.note:
        st.caption(v.note)
