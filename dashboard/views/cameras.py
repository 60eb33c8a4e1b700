"""Site / camera: each camera's latest snapshot with its zones and the event's boxes, status, fps, detection rate;
its counting analytics over a time range (crossings per line, direction and label, zone occupancy, rule hits: a
table of totals and a chart per window); on the edge backend a live view from the frame ring (a few frames a
second, as a reader that never blocks Capture)."""

from __future__ import annotations

import time

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import render
from dashboard.context import source
from dashboard.data.base import counts_series, counts_table

LIVE_PERIOD_S = 0.5  # 2 fps: enough to see the scene, nothing Inference would notice
RANGES = {"last hour": 3600, "last 24 hours": 86400, "last 7 days": 7 * 86400}

st.title("Site / camera")
src = source()
sites = src.sites()
site = st.selectbox("Site", sites, key="cam_site") if sites else None
span = st.selectbox("Counts over", list(RANGES), index=1, key="cam_range")
cams = src.cameras(site)
if not cams:
    st.info("No cameras known for this site yet.")
    st.stop()


@st.fragment(run_every=LIVE_PERIOD_S)
def live(camera_key: str) -> None:
    frame = src.live_frame(camera_key)
    if frame is None:
        st.caption("No live frame: Capture is not running this camera on this box.")
    else:
        zones = next((c.zones for c in cams if c.key == camera_key), {})
        st.image(render.rgb(render.draw_zones(frame, zones)) if frame.ndim == 3 else frame,
                 caption=f"live · {camera_key}", width="stretch")


for cam in cams:
    st.subheader(cam.key)
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("status", cam.status)
    c2.metric("input fps", "-" if cam.input_fps is None else f"{cam.input_fps:.1f}")
    c3.metric("detection fps", "-" if cam.detection_fps is None else f"{cam.detection_fps:.1f}")
    c4.metric("last event (UTC)", time.strftime("%H:%M:%S", time.gmtime(cam.last_seen)) if cam.last_seen else "-")
    left, right = st.columns(2)
    with left:
        img = src.snapshot(cam.latest) if cam.latest else None
        pic = render.decode(img) if img else None
        if pic is None:
            st.caption("No snapshot yet.")
        else:
            drawn = render.draw_event(render.draw_zones(pic, cam.zones), cam.latest)  # type: ignore[arg-type]
            st.image(render.rgb(drawn), caption=f"latest snapshot · {cam.latest.label}",  # type: ignore[union-attr]
                     width="stretch")
        if cam.zones:
            st.caption("zones: " + ", ".join(cam.zones))
    with right:
        if src.name == "edge":
            if st.toggle("Live view", key=f"live_{cam.key}"):
                live(cam.key)
        else:
            st.caption("The live view is on the edge backend only (frames never leave the box).")
    now = time.time()
    counted = src.counts(cam.key, now - RANGES[span], now)
    if not counted:
        st.caption(f"No counts in the {span} (no analytics lines or zones on this camera, or nothing counted).")
        continue
    st.markdown(f"**Counts** · {span} · {len(counted)} interval(s)")
    st.dataframe(pd.DataFrame(counts_table(counted)), hide_index=True, width="stretch")
    points = counts_series(counted)
    if points:
        df = pd.DataFrame([{**p, "time": pd.Timestamp(p["t"], unit="s", tz="UTC")} for p in points])
        st.altair_chart(alt.Chart(df, title="counts per interval").mark_line(point=True).encode(
            x="time:T", y="value:Q", color="series:N"), width="stretch")
