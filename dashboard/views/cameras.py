"""Site / camera: each camera's latest snapshot with its zones and the event's boxes, status, fps, detection rate;
on the edge backend a live view from the frame ring (a few frames a second, as a reader that never blocks Capture)."""

from __future__ import annotations

import time

import streamlit as st

from dashboard import render
from dashboard.context import source

LIVE_PERIOD_S = 0.5  # 2 fps: enough to see the scene, nothing Inference would notice

st.title("Site / camera")
src = source()
sites = src.sites()
site = st.selectbox("Site", sites, key="cam_site") if sites else None
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
