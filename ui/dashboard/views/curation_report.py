"""Curation: what each step dropped and why (with examples), duplicate clusters side by side, split leaks."""

from __future__ import annotations

import streamlit as st

from ui.dashboard import components as ui
from ui.dashboard import data

url = ui.store_or_stop()
sid = ui.pick_snapshot(url, prefer=("clean",))
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
st.caption(f"{rep['rows']:,} records kept from {len(rep['parents'])} parent snapshot(s)")

st.subheader("Steps")
MAIN = ("read", "kept", "dropped")
st.dataframe(
    [
        {
            "step": s["name"],
            **{k: (s.get("counters") or {}).get(k) for k in MAIN},
            "other counters": ", ".join(
                f"{k}={v:,}"
                for k, v in (s.get("counters") or {}).items()
                if k not in MAIN and isinstance(v, int | float) and v
            ),
        }
        for s in rep["steps"]
    ],
    hide_index=True,
)

st.subheader("Dropped, by step and reason")
if not rep["drops"]:
    st.info("No step dropped anything.")
for i, d in enumerate(rep["drops"]):
    with st.expander(f"{d['step']} · {d['reason']} · {d['count']:,} records", expanded=i == 0):
        st.dataframe(d["examples"], hide_index=True)

st.subheader("Duplicate clusters")
if not rep["clusters"]:
    st.info("No dedup step ran in this curation.")
for c in rep["clusters"]:
    largest = "; the largest:" if c["largest"] else ""
    st.markdown(f"**{c['name']}**: {c['clusters']:,} clusters, {c['members']:,} members{largest}")
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
    st.subheader(table["name"])
    if table["rows"]:
        st.dataframe(table["data"], hide_index=True)
    else:
        st.caption("empty")
