"""Fleet: sites and devices (online, last seen, versions, uplink backlog and link), alerts, rollouts in progress."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from dashboard.context import rollouts, source

st.title("Fleet")
src = source()
devices = src.devices()
sites = src.sites()
c1, c2, c3 = st.columns(3)
c1.metric("sites", len(sites))
c2.metric("devices", len(devices))
c3.metric("online", sum(d.online for d in devices))
if not devices:
    st.info("No device has reported yet." if src.name == "cloud" else "No runtime state under this root yet.")
else:
    st.dataframe(pd.DataFrame([{
        "device": d.thing, "site": d.site, "online": "online" if d.online else "offline",
        "last seen (UTC)": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(d.last_seen)) if d.last_seen else "-",
        "uplink backlog": "-" if d.backlog_items is None else f"{d.backlog_items} items",
        "backlog bytes": d.backlog_bytes, "link": d.link,
        "versions": ", ".join(f"{c.removeprefix('com.ggvision.')} {v}" for c, v in sorted(d.versions.items())),
    } for d in devices]), hide_index=True, width="stretch")
    alerts = [(d.thing, a) for d in devices for a in d.alerts]
    st.subheader("Needs attention")
    if alerts:
        for thing, a in alerts:
            st.warning(f"{thing}: {a}")
    else:
        st.success("Nothing needs attention.")
st.subheader("Rollouts in progress")
ro = rollouts()
if ro is None:
    st.caption("No rollout configuration (set GGVISION_DASHBOARD_ROLLOUT_CONFIG to a rollout.yaml).")
else:
    running = ro.in_progress()
    if running:
        st.dataframe(pd.DataFrame(running), hide_index=True)
    else:
        st.caption("None running.")
