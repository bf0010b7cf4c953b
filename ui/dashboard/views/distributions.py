"""Distributions: labels per task / source / split, before vs after curation and augmentation, imbalance, scores."""

from __future__ import annotations

import altair as alt
import streamlit as st

from curation import browse
from ui.dashboard import components as ui
from ui.dashboard import data

url = ui.store_or_stop()
sid = ui.pick_snapshot(url)
m = data.manifest(url, sid)

st.header("Distributions")
tasks = browse.label_tasks(m)
if not tasks:
    st.info(f"Snapshot {sid} has no labels.")
    st.stop()

c1, c2, c3 = st.columns(3)
task = c1.selectbox("Task", list(tasks), key="dist_task")
label_source = c2.selectbox("Label source", tasks[task], key="dist_label_source")
group = c3.radio("Colour by", ["source", "split"], horizontal=True, key="dist_group")

rows = browse.label_counts(m, task=task, label_source=label_source)
st.subheader(f"{task} ({label_source}) in {sid[:12]}")
st.caption(f"{sum(r['count'] for r in rows):,} labels · counts from the snapshot's manifest")
chart = (
    alt.Chart(alt.Data(values=rows))
    .mark_bar()
    .encode(
        x=alt.X("sum(count):Q", title="labels"),
        y=alt.Y("value:N", sort="-x", title=None),
        color=alt.Color(f"{group}:N"),
        tooltip=["value:N", "source:N", "split:N", "count:Q"],
    )
)
st.altair_chart(chart)

st.subheader("Before → after")
ancestors = data.ancestors(url, sid)
if not ancestors:
    st.info("This snapshot has no parent to compare with (an ingested snapshot).")
else:
    parents = tuple(m["parents"])
    options = ["parents", *ancestors]
    names = {n["id"]: ui.snapshot_label(n) for n in data.lineage(url)["nodes"]}
    against = st.selectbox(
        "Compare with",
        options,
        format_func=lambda o: f"its parent(s): {', '.join(p[:12] for p in parents)}" if o == "parents" else names[o],
        key="dist_against",
    )
    before_ids = parents if against == "parents" else (against,)
    before = [data.manifest(url, b) for b in before_ids]
    change = browse.distribution_change(before, m, task=task, label_source=label_source)
    long = [
        {"value": r["value"], "snapshot": which, "share": r[f"{which}_share"], "count": r[which]}
        for r in change
        for which in ("before", "after")
    ]
    st.altair_chart(
        alt.Chart(alt.Data(values=long))
        .mark_bar()
        .encode(
            x=alt.X("share:Q", axis=alt.Axis(format="%"), title="share of labels"),
            y=alt.Y("value:N", sort=[r["value"] for r in change], title=None),
            yOffset=alt.YOffset("snapshot:N", sort=["before", "after"]),
            color=alt.Color("snapshot:N", sort=["before", "after"]),
            tooltip=["value:N", "snapshot:N", "count:Q", alt.Tooltip("share:Q", format=".1%")],
        )
    )
    ui.table(
        change,
        max_rows=30,
        column_config={
            "before_share": st.column_config.NumberColumn("share before", format="percent"),
            "after_share": st.column_config.NumberColumn("share after", format="percent"),
        },
    )

    st.subheader("Imbalance (majority / minority count)")
    balance = [r for r in data.balance(url, sid, tuple(before_ids)) if r["task"] == task]
    ui.table(
        balance,
        column_config={
            c: st.column_config.Column(ui.words(c).replace(" after", " (after)").replace(" before", " (before)"))
            for c in (balance[0] if balance else {})
        },
    )

st.subheader("Score histograms (traits, empathy)")
sources = [ui.ANY, *m["counts"]]
hist_source = st.selectbox("Record source", sources, key="dist_hist_source")
hist = data.score_histograms(url, sid, None if hist_source == ui.ANY else hist_source)
if not hist:
    st.info("No score labels (empathy, trait.*) here: `workbench label REF --task traits --task empathy` adds them.")
else:
    st.altair_chart(
        alt.Chart(alt.Data(values=hist))
        .mark_bar()
        .encode(
            x=alt.X("bucket:O", title="score"),
            y=alt.Y("count:Q", title="labels"),
            color="label_source:N",
            xOffset="label_source:N",
            tooltip=["task:N", "label_source:N", "bucket:O", "count:Q"],
        )
        .properties(width=220, height=140)
        .facet(facet=alt.Facet("task:N", title=None), columns=3)
        .resolve_scale(y="independent")
    )
