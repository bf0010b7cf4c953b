"""Curation: what each step dropped and why (with examples), duplicate clusters side by side, split leaks."""

from __future__ import annotations

import altair as alt
import streamlit as st

from ui.dashboard import components as ui
from ui.dashboard import data

url = ui.store_or_stop()
sid = ui.pick_snapshot(url, prefer=("clean", "example-clean"))
m = data.manifest(url, sid)

st.header("Curation")
curated = [n for n in data.lineage(url)["nodes"] if n["step"].startswith("curate.")]
if not any(st_["kind"].startswith("curate.") for st_ in m["steps"]):
    names = ", ".join(ui.snapshot_label(n) for n in curated) or "none yet (`workbench curate ...`)"
    st.info(
        f"Snapshot {sid[:12]} was not made by `workbench curate` (its step: {m['steps'][-1]['kind']}). "
        f"Curated snapshots: {names}."
    )
    st.stop()

rep = data.report(url, sid)
total_dropped = sum(d["count"] for d in rep["drops"])
st.caption(f"{rep['rows']:,} records kept, {total_dropped:,} dropped, from {len(rep['parents'])} parent snapshot(s)")

st.subheader("What each step dropped")
if not rep["drops"]:
    st.info("No step dropped anything.")
else:
    bars = [
        {"step": ui.step_title(d["step"]), "reason": ui.words(d["reason"]), "records": d["count"]} for d in rep["drops"]
    ]
    order = sorted({b["step"] for b in bars}, key=lambda name: -sum(b["records"] for b in bars if b["step"] == name))
    st.altair_chart(
        alt.Chart(alt.Data(values=bars))
        .mark_bar()
        .encode(
            x=alt.X("sum(records):Q", title="records dropped", axis=alt.Axis(format="d", tickMinStep=1)),
            y=alt.Y("step:N", sort=order, title=None, axis=alt.Axis(labelLimit=0)),
            color=alt.Color("reason:N", title="reason", legend=alt.Legend(labelLimit=0)),
            tooltip=["step:N", "reason:N", "records:Q"],
        )
        .properties(height=alt.Step(28))
    )

st.subheader("Steps")
MAIN = ("read", "kept", "dropped")
ui.table(
    [
        {
            "step": ui.step_title(s["name"]),
            **{k: (s.get("counters") or {}).get(k) for k in MAIN},
            "other counts": ", ".join(
                f"{ui.words(k)} {v:,}"
                for k, v in (s.get("counters") or {}).items()
                if k not in MAIN and isinstance(v, int | float) and v
            ),
        }
        for s in rep["steps"]
    ],
    wrap={"step": 170, "other counts": 420},
    lines=2,
)

st.subheader("Dropped records, by step and reason")
for i, d in enumerate(rep["drops"]):
    title = f"{ui.step_title(d['step'])} · {ui.words(d['reason'])} · {d['count']:,} records"
    with st.expander(title, expanded=i == 0):
        ui.table(d["examples"], wrap={"id": 180, "detail": 220, "text": 380}, lines=4)

st.subheader("Duplicate clusters")
if not rep["clusters"]:
    st.info("No dedup step ran in this curation.")
for c in rep["clusters"]:
    largest = "; the largest:" if c["largest"] else ""
    st.markdown(f"**{ui.artifact_title(c['name'])}**: {c['clusters']:,} clusters, {c['members']:,} members{largest}")
    for cluster in c["largest"]:
        members = cluster["members"]
        st.caption(f"cluster {cluster['cluster']} · {len(members)} members")
        cols = st.columns(min(len(members), 4))
        for col, member in zip(cols, members[:4], strict=False):
            with col:
                mark = ":green[kept]" if member["kept"] else ":red[dropped]"
                sim = member.get("similarity")
                sim_text = f" · similarity {sim:.2f}" if isinstance(sim, float) else ""
                st.markdown(f"{mark} `{member['id']}` ({member.get('split') or '?'}){sim_text}")
                st.text(member["text"])
        if len(members) > 4:
            st.caption(f"… and {len(members) - 4} more members")

for table in rep["tables"]:
    st.subheader(ui.artifact_title(table["name"]))
    if table["rows"]:
        ui.table(table["data"])
    else:
        st.caption("none")
