"""Pictures and charts the pages show: boxes and zones drawn on snapshots (OpenCV), the events timeline and gate
plots (Altair), a thermal frame as a heat map. Pure functions of the data layer's records: tested without Streamlit."""

from __future__ import annotations

import time
from collections import Counter

import altair as alt
import cv2
import numpy as np
import pandas as pd

from .data.base import Event

BOX_BGR = (0, 200, 255)
ZONE_BGR = (80, 220, 80)


def decode(image: bytes) -> np.ndarray | None:
    """JPEG/WebP/PNG bytes as a BGR array; None when it is not a picture."""
    arr = cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR)
    return arr if arr is not None and arr.size else None


def draw_event(img: np.ndarray, event: Event) -> np.ndarray:
    """The event's boxes on its snapshot: the one nearest the snapshot's time thick, the track thin. Boxes are in
    pixels of the event's frame size; a snapshot of another size (scaled on the box) is drawn scaled."""
    out = img.copy()
    h, w = out.shape[:2]
    fw, fh = event.frame_size or (w, h)
    sx, sy = w / fw, h / fh
    for b in event.boxes:
        cv2.rectangle(out, (int(b.x1 * sx), int(b.y1 * sy)), (int(b.x2 * sx), int(b.y2 * sy)), BOX_BGR, 1)
    if event.boxes:
        b = event.boxes[0]
        cv2.rectangle(out, (int(b.x1 * sx), int(b.y1 * sy)), (int(b.x2 * sx), int(b.y2 * sy)), BOX_BGR, 3)
        cv2.putText(out, f"{event.label} {event.edge_score:.2f}", (int(b.x1 * sx), max(12, int(b.y1 * sy) - 4)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.5, BOX_BGR, 1, cv2.LINE_AA)
    return out


def draw_zones(img: np.ndarray, zones: dict[str, list[tuple[float, float]]]) -> np.ndarray:
    """Zone polygons (0..1 of the frame, as the Filter's configuration has them) over a frame."""
    out = img.copy()
    h, w = out.shape[:2]
    overlay = out.copy()
    for name, pts in zones.items():
        poly = np.array([[int(x * (w - 1)), int(y * (h - 1))] for x, y in pts], np.int32)
        if len(poly) < 3:
            continue
        cv2.fillPoly(overlay, [poly], ZONE_BGR)
        cv2.polylines(out, [poly], True, ZONE_BGR, 2)
        cv2.putText(out, name, tuple(int(v) for v in poly.min(axis=0) + 6), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                    ZONE_BGR, 2, cv2.LINE_AA)
    return cv2.addWeighted(overlay, 0.2, out, 0.8, 0)


def rgb(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def per_hour(events: list[Event]) -> pd.DataFrame:
    """Events per hour (UTC) per label."""
    counts = Counter((int(e.start // 3600) * 3600, e.label) for e in events)
    return pd.DataFrame([{"hour": pd.Timestamp(h, unit="s", tz="UTC"), "label": lab, "events": n}
                         for (h, lab), n in sorted(counts.items())], columns=["hour", "label", "events"])


def timeline(events: list[Event]) -> alt.Chart:
    return alt.Chart(per_hour(events), title="events per hour").mark_bar().encode(
        x=alt.X("hour:T", title="hour (UTC)"), y=alt.Y("events:Q", stack=True), color="label:N",
        tooltip=["hour:T", "label:N", "events:Q"])


def event_rows(events: list[Event]) -> pd.DataFrame:
    return pd.DataFrame([{
        "time (UTC)": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(e.start)), "camera": f"{e.thing}/{e.camera}",
        "label": e.label, "edge score": round(e.edge_score, 3), "zones": ", ".join(e.zones),
        "verdict": e.verdict or "-", "cloud score": None if e.cloud_score is None else round(e.cloud_score, 3),
        "duration s": round(max(0.0, e.end - e.start), 1), "event": e.event_id} for e in events],
        columns=["time (UTC)", "camera", "label", "edge score", "zones", "verdict", "cloud score", "duration s",
                 "event"])


def heatmap(frame: np.ndarray) -> alt.Chart:
    """A thermal frame (°C) as a heat map, downsampled 4x so the chart stays light (30 x 40 cells)."""
    f = frame.reshape(frame.shape[:2])
    step = max(1, f.shape[0] // 30)
    small = f[::step, ::step]
    ys, xs = np.mgrid[0:small.shape[0], 0:small.shape[1]]
    df = pd.DataFrame({"x": xs.ravel(), "y": ys.ravel(), "celsius": small.ravel().astype(float)})
    return alt.Chart(df, title="thermal frame (°C)").mark_rect().encode(
        x=alt.X("x:O", axis=None), y=alt.Y("y:O", axis=None),
        color=alt.Color("celsius:Q", scale=alt.Scale(scheme="inferno")), tooltip=["celsius:Q"])


def gate_chart(rows: pd.DataFrame) -> alt.Chart:
    """Each gate's value per device next to its baseline (the previous version's)."""
    long = rows.melt(id_vars=["gate", "thing", "status"], value_vars=["value", "baseline"], var_name="of",
                     value_name="metric").dropna(subset=["metric"])
    return alt.Chart(long, title="gate metrics of the last canary").mark_bar().encode(
        x=alt.X("of:N", title=None), y=alt.Y("metric:Q"), color="of:N", column=alt.Column("gate:N"),
        tooltip=["gate:N", "thing:N", "of:N", "metric:Q", "status:N"]).resolve_scale(y="independent")  # own units
