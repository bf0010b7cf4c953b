"""Snapshots: the store's lineage, one snapshot's counts and steps, and its records as chats (filtered, paged)."""

from __future__ import annotations

import json

import streamlit as st

from curation import browse
from curation.record import LABEL_SOURCES, SPLITS
from ui.dashboard import components as ui
from ui.dashboard import data

url = ui.store_or_stop()
sid = ui.pick_snapshot(url)
lineage = data.lineage(url)
m = data.manifest(url, sid)

st.header("Snapshots")
st.caption(f"store `{url}` · {len(lineage['nodes'])} snapshots · refs are pointers, snapshots never change")

for problem in lineage["problems"]:
    st.error(f"Damaged, left out: {problem}. Run `workbench snapshots verify --all` for a full check.")

st.graphviz_chart(ui.lineage_dot(lineage, selected=sid))
ui.table(
    [
        {
            "id": n["id"],
            "refs": ", ".join(n["refs"]),
            "status": n["status"],
            "step": n["step"],
            "rows": n["rows"],
            "sources": ", ".join(n["sources"]),
            "parents": ", ".join(p[:8] for p in n["parents"]),
            "created": (n["created_at"] or "")[:16].replace("T", " "),
        }
        for n in reversed(lineage["nodes"])
    ],
    wrap={"id": 125, "refs": 125, "step": 100, "sources": 180, "parents": 130},
    lines=4,
    max_rows=15,
)

st.subheader(f"Snapshot {sid}")
cols = st.columns(4)
cols[0].metric("records", f"{m['rows']:,}")
cols[1].metric("status", m["status"])
cols[2].metric("steps", len(m["steps"]))
cols[3].metric("parents", len(m["parents"]))
ui.table(browse.counts_table(m), max_rows=40)
with st.expander("Steps (configuration and counters)"):
    for step in m["steps"]:
        st.markdown(f"**{step['kind']}**")
        st.code(json.dumps({k: v for k, v in step.items() if k != "inputs"}, indent=1, default=str), language="json")

st.subheader("Records")
tasks = browse.label_tasks(m)
c1, c2, c3, c4, c5 = st.columns(5)
source = c1.selectbox("Source", [ui.ANY, *m["counts"]], key="rec_source")
split = c2.selectbox("Split", [ui.ANY, *SPLITS], key="rec_split")
task = c3.selectbox("Label task", [ui.ANY, *tasks], key="rec_task")
value = c4.selectbox(
    "Label value", [ui.ANY, *browse.label_values(m, task)] if task != ui.ANY else [ui.ANY], key="rec_value"
)
label_source = c5.selectbox("Label source", [ui.ANY, *LABEL_SOURCES], key="rec_label_source")
c6, c7 = st.columns([4, 1])
text = c6.text_input("Search text or id", key="rec_text", placeholder="a word, a phrase, or part of an id")
page_size = c7.selectbox("Per page", [5, 10, 20, 50], index=1, key="rec_page_size")

flt = {
    "source": None if source == ui.ANY else source,
    "split": None if split == ui.ANY else split,
    "task": None if task == ui.ANY else task,
    "value": None if value == ui.ANY else value,
    "label_source": None if label_source == ui.ANY else label_source,
    "text": text.strip() or None,
}
signature = (sid, page_size, *flt.values())
if st.session_state.get("rec_signature") != signature:  # another filter: back to page 1
    st.session_state["rec_signature"] = signature
    st.session_state["rec_page"] = 1

matches = data.matching_rows(url, sid, **flt)
pages = max(1, -(-len(matches) // page_size))
st.session_state["rec_page"] = min(st.session_state.get("rec_page", 1), pages)
page_no = st.number_input(f"Page (of {pages:,})", min_value=1, max_value=pages, step=1, key="rec_page")
result = data.page(url, sid, int(page_no) - 1, page_size, **flt)
st.markdown(f"**{result.total:,} records match** · page {result.page + 1:,} of {result.pages:,}")
if not result.records:
    st.info("No record matches these filters.")
for i, record in enumerate(result.records):
    title = f"{record['id']} · {record['source']} / {record['split']} · {len(record['turns'])} turns"
    with st.expander(title, expanded=i == 0):
        ui.render_record(record)
