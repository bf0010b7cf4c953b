"""Results: evaluation reports (base vs fine-tuned, per metric, with confidence intervals) and training loss curves."""

from __future__ import annotations

import altair as alt
import streamlit as st

from ui.dashboard import data

st.header("Results")
runs = data.runs_dir()
found = data.results(str(runs) if runs else None)
st.caption(
    f"runs folder `{runs}`" if runs else "no runs folder: start the dashboard with `workbench dashboard --runs DIR`"
)

for error in found.errors:
    st.warning(error)

if found.empty:
    where = f"`{runs}`" if runs else "the folder `workbench dashboard --runs DIR` names"
    st.info(
        "No evaluation reports or training runs yet.\n\n"
        f"This page reads {where}: one folder per training run holding "
        '`metrics.jsonl` (one JSON object per logging step, e.g. `{"step": 10, "loss": 1.93}`) or Hugging Face\'s '
        "`trainer_state.json`, and evaluation reports named `eval*.json` "
        '(`{"models": {"base": ..., "finetuned": ...}, "metrics": [{"metric", "model", "value", "ci_low", "ci_high", '
        '"n"}]}`). `workbench finetune` and `workbench evaluate` will write them there; the format is in the README '
        "(Dashboard) and in `evaluate/results.py`."
    )
    st.stop()

if found.reports:
    st.subheader("Evaluation reports")
    names = [f"{r.name} ({r.path})" for r in found.reports]
    chosen = st.selectbox("Report", range(len(names)), format_func=names.__getitem__, key="res_report")
    report = found.reports[chosen]
    st.caption(
        " · ".join(f"**{k}**: {v}" for k, v in report.models.items())
        + (f" · snapshot `{report.snapshot}`" if report.snapshot else "")
        + (f" · {report.created_at}" if report.created_at else "")
    )
    st.dataframe(report.table(), hide_index=True)
    if report.comparisons:
        st.markdown(
            "**Base against tuned** (paired by prompt; Holm across the report; a verdict needs p < 0.05 and a CI "
            "that excludes 0)"
        )
        st.dataframe(report.verdicts(), hide_index=True, key="res_verdicts")
    points = [
        {
            "metric": x.metric,
            "model": x.model,
            "value": x.value,
            "low": x.ci_low if x.ci_low is not None else x.value,
            "high": x.ci_high if x.ci_high is not None else x.value,
        }
        for x in report.metrics
    ]
    base = alt.Chart(alt.Data(values=points)).encode(
        y=alt.Y("model:N", title=None), color="model:N", tooltip=["metric:N", "model:N", "value:Q", "low:Q", "high:Q"]
    )
    chart = (
        (base.mark_rule(strokeWidth=2).encode(x=alt.X("low:Q", title="value (with CI)"), x2="high:Q"))
        + base.mark_point(filled=True, size=80).encode(x="value:Q")
    ).properties(width=260, height=70)
    st.altair_chart(chart.facet(row=alt.Row("metric:N", title=None)).resolve_scale(x="independent"))

if found.runs:
    st.subheader("Training runs")
    names = [r.name for r in found.runs]
    picked = st.multiselect("Runs", names, default=names[:3], key="res_runs")
    rows = [row for r in found.runs if r.name in picked for row in r.long()]
    series = sorted({row["series"] for row in rows})
    default = [s for s in ("loss", "eval_loss", "train_loss") if s in series] or series[:1]
    shown = st.multiselect("Series", series, default=default, key="res_series")
    rows = [row for row in rows if row["series"] in shown]
    if rows:
        st.altair_chart(
            alt.Chart(alt.Data(values=rows))
            .mark_line(point=len(rows) < 200)
            .encode(
                x=alt.X("step:Q"),
                y=alt.Y("value:Q", scale=alt.Scale(zero=False)),
                color="run:N",
                strokeDash="series:N",
                tooltip=["run:N", "series:N", "step:Q", "value:Q"],
            )
        )
    for r in found.runs:
        if r.name in picked and r.info:
            with st.expander(f"{r.name}: run.json"):
                st.json(r.info)
