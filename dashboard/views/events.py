"""Events: filters (site, camera, label, zone, time, verdict), the timeline (events per hour per label), the page's
list, a grid of snapshots with boxes, and one event's clip and its edge and cloud verdicts side by side. One page of
events at a time from the backend (paged index queries in the cloud)."""

from __future__ import annotations

import time

import streamlit as st

from dashboard import render
from dashboard.context import source
from dashboard.data.base import PAGE_SIZE, Event, EventQuery
from dashboard.media import clip_to_mp4

GRID = 12  # snapshots shown per page
TIMELINE_MAX = 500  # events the timeline counts (ten pages): a bounded read however many events there are
RANGES = {"last hour": 3600, "last 24 hours": 86400, "last 7 days": 7 * 86400, "all": None}
VERDICTS = ("any", "confirmed", "disputed", "unverified")

st.title("Events")
src = source()
sites = src.sites()
f1, f2, f3 = st.columns(3)
site = f1.selectbox("Site", sites, key="ev_site") if sites else None
cams = src.cameras(site) if site else []
camera = f2.selectbox("Camera", ["all", *[c.key for c in cams]], key="ev_camera")
labels = f3.multiselect("Label", src.labels(), key="ev_labels")
f4, f5, f6 = st.columns(3)
zones = sorted({z for c in cams for z in c.zones})
zone = f4.selectbox("Zone", ["any", *zones], key="ev_zone") if src.name == "edge" else "any"
span = f5.selectbox("Time", list(RANGES), index=3, key="ev_range")
verdict = f6.selectbox("Cloud verdict", VERDICTS, key="ev_verdict") if src.name == "cloud" else "any"
if src.name == "edge":
    f6.caption("Cloud verdicts: on the cloud backend (the box does not keep them).")
now = time.time()
query = EventQuery(site=site, camera_key=None if camera == "all" else camera, labels=tuple(labels),
                   zone=None if zone == "any" else zone, verdict=None if verdict == "any" else verdict,
                   since=None if RANGES[span] is None else now - RANGES[span])

# The cursor stack: page n's cursor is cursors[n]; a new query starts at page 0.
if st.session_state.get("ev_query") != query:
    st.session_state.ev_query, st.session_state.ev_cursors = query, [None]
cursors: list[str | None] = st.session_state.ev_cursors
page = src.events(query, cursors[-1], PAGE_SIZE)
n = len(cursors)
b1, b2, b3 = st.columns([1, 1, 4])
if b1.button("Previous page", disabled=n == 1):
    cursors.pop()
    st.rerun()
if b2.button("Next page", disabled=page.cursor is None):
    cursors.append(page.cursor)
    st.rerun()
b3.caption(f"page {n} · {len(page.events)} events{'' if page.cursor else ' · last page'}")

if not page.events:
    st.info("No events match these filters.")
    st.stop()


@st.cache_data(ttl=30, show_spinner=False)
def _timeline_events(_src_name: str, q: EventQuery) -> list[Event]:
    out: list[Event] = []
    cursor = None
    while len(out) < TIMELINE_MAX:
        p = src.events(q, cursor, min(100, TIMELINE_MAX - len(out)))
        out.extend(p.events)
        cursor = p.cursor
        if cursor is None:
            break
    return out


tl = _timeline_events(src.name, query)
st.altair_chart(render.timeline(tl), width="stretch")
st.caption(f"timeline: the newest {len(tl)} matching events" + (f" (at most {TIMELINE_MAX})" if len(tl) >= TIMELINE_MAX
                                                                  else ""))
st.dataframe(render.event_rows(page.events), hide_index=True, width="stretch")

st.subheader("Snapshots")
with_snap = [e for e in page.events if e.snapshot][:GRID]
cols = st.columns(4)
for i, ev in enumerate(with_snap):
    img = src.snapshot(ev)
    pic = render.decode(img) if img else None
    with cols[i % 4]:
        if pic is None:
            st.caption(f"{ev.label}: snapshot gone")
        else:
            st.image(render.rgb(render.draw_event(pic, ev)), caption=f"{ev.camera} · {ev.label} · "
                     f"{time.strftime('%H:%M:%S', time.gmtime(ev.start))}", width="stretch")

st.subheader("Event")
by_key = {e.key: e for e in page.events}
chosen = st.selectbox("Event", list(by_key), key="ev_chosen", format_func=lambda k: (
    f"{time.strftime('%H:%M:%S', time.gmtime(by_key[k].start))} {by_key[k].camera} {by_key[k].label}"))
ev = by_key[chosen]
e1, e2 = st.columns(2)
e1.metric("edge", ev.label, f"score {ev.edge_score:.2f}", delta_color="off")
e2.metric("cloud", ev.verdict or ("-" if src.name == "cloud" else "not on the edge"),
          "" if ev.cloud_score is None else f"score {ev.cloud_score:.2f}", delta_color="off")
url = src.snapshot_url(ev)
if url:
    st.link_button("Snapshot (full size, link valid 5 minutes)", url)
clip = src.clip(ev)
if clip is None:
    st.caption("No clip for this event (none recorded, or given up for space).")
else:
    try:
        st.video(clip_to_mp4(clip), format="video/mp4")
    except ValueError as e:
        st.warning(f"The clip cannot play in a browser: {e}")
