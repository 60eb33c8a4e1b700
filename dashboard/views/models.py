"""Models and rollouts: versions per stage, history, the last canary's gate metrics as plots; for operators, pause /
resume and rollback, which go through the rollout engine (dashboard/data/rollouts.py)."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from dashboard import render
from dashboard.context import is_operator, rollouts

st.title("Models and rollouts")
try:
    ro = rollouts()
except ValueError as e:
    st.error(str(e))
    st.stop()
if ro is None:
    st.info("No rollout configuration: set GGVISION_DASHBOARD_ROLLOUT_CONFIG to the rollout.yaml the rollout CLI "
            "uses (docs/rollout.md).")
    st.stop()

st.subheader("Versions per stage")
stages = ro.stages()
if stages:
    st.dataframe(pd.DataFrame(stages).drop(columns=["updated"]), hide_index=True, width="stretch")
else:
    st.caption("No model has been rolled out yet.")

st.subheader("Gate metrics of the last canary")
gates = ro.last_gates()
if gates:
    df = pd.DataFrame([g.__dict__ for g in gates])
    g0 = gates[0]
    st.caption(f"{g0.model} {g0.version} at {g0.stage} ({g0.event.replace('_', ' ')})")
    st.altair_chart(render.gate_chart(df), width="content")
    st.dataframe(df[["gate", "thing", "status", "value", "baseline", "limit"]], hide_index=True)
else:
    st.caption("No gate results recorded yet.")

st.subheader("History")
hist = ro.history()
if hist:
    st.dataframe(pd.DataFrame([{**h, **{k: time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(h[k])) if h.get(k) else "-"
                                        for k in ("started", "ended")}} for h in hist]), hide_index=True,
                 width="stretch")

if is_operator():
    st.subheader("Operator")
    stage = st.selectbox("Stage", ro.stage_names(), key="op_stage")
    paused = ro.state.paused(stage)
    o1, o2 = st.columns(2)
    if o1.button("Resume rollouts" if paused else "Pause rollouts", key="op_pause"):
        ro.set_paused(stage, not paused)
        st.rerun()
    models = sorted({s["model"] for s in stages})
    if models:
        model = o2.selectbox("Model", models, key="op_model")
        reason = o2.text_input("Reason", "rolled back from the dashboard", key="op_reason")
        if o2.button("Roll back", key="op_rollback", type="primary"):
            try:
                st.code(ro.rollback(model, stage, reason))
                st.success(f"{model} at {stage} rolled back.")
            except Exception as e:  # the engine's refusal (no promote to undo) or the backend's failure, said
                st.error(f"Rollback failed: {type(e).__name__}: {e}")
