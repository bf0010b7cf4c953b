"""Disagreements: where LLM, gold and human labels differ; alpha, kappa, confusion; send units to Argilla."""

from __future__ import annotations

import streamlit as st

from curation import browse
from curation.errors import WorkbenchError
from labeling.audit import task_kind
from ui.dashboard import components as ui
from ui.dashboard import data

COMPARISONS = ui.COMPARISONS
CODER_KINDS = {"gold": "gold", "llm": "machine", "model": "machine", "human": "human"}
METRIC_TITLES = {"macro_f1": "macro-F1", "micro_f1": "micro-F1", "kappa_quadratic": "kappa (quadratic)", "mae": "MAE"}

url = ui.store_or_stop()
sid = ui.pick_snapshot(url, prefer=("labeled", "reviewed", "example-labeled"), follow_reviews=True)
m = data.manifest(url, sid)

st.header("Disagreements")


def _comparable(task: str, sources: list[str]) -> bool:
    try:
        task_kind(task)
    except WorkbenchError:
        return False
    return len(sources) >= 2 or "human" in sources  # two kinds of coder, or human reviewers


labels_of = {t: sum(r["count"] for r in browse.label_counts(m, task=t)) for t in browse.label_tasks(m)}
# fewest labels first: the default opens fast on any snapshot (emotion's 28-label units cost most)
tasks = sorted((t for t, s in browse.label_tasks(m).items() if _comparable(t, s)), key=lambda t: (labels_of[t], t))
if not tasks:
    st.info(
        f"Snapshot {sid[:12]} has no task labeled by two kinds of coder (gold, LLM or model, human). "
        "Label it (`workbench label`) or pick a labeled snapshot."
    )
    st.stop()
c1, c2, c3 = st.columns(3)
task = c1.selectbox("Task", tasks, format_func=lambda t: f"{t} ({labels_of[t]:,} labels)", key="dis_task")
source = c2.selectbox("Record source", [ui.ANY, *m["counts"]], key="dis_source")
top = c3.number_input("Worst units listed", min_value=5, max_value=500, value=50, step=5, key="dis_top")
source = None if source == ui.ANY else source

rep = data.agreement(url, sid, task, source, int(top))
coders = rep["coders"]
st.caption(
    f"{rep['units']:,} units ({ui.words(rep['kind'])}, {rep['level']} alpha) · coders: "
    + "; ".join(f"{CODER_KINDS.get(k, k)}: {', '.join(v) or 'none'}" for k, v in coders.items())
)
if rep.get("aggregated_units"):
    st.caption(
        f"{rep['aggregated_units']:,} record-level units (one gold rating per conversation) compare gold with the mean "
        "of the machine's per-turn ratings of that conversation, as the audit below does."
    )
if rep.get("excluded_labels"):
    st.info(
        f"{rep['excluded_labels']:,} machine labels on records their labeler was fitted on (its training split's "
        "gold, memorised) are left out of every figure on this page: a labeler is never scored on what it learnt from."
    )

summary = ui.agreement_summary(rep)
pairs = []
for key, title in COMPARISONS.items():
    comp = rep[key]
    if comp is None:
        continue
    for p in comp["pairs"]:
        pairs.append(
            {
                "comparison": title,
                "coder a": p["a"],
                "coder b": p["b"],
                "n": p["n"],
                "alpha": ui.fmt(p["alpha"]),
                "kappa": ui.fmt(p["kappa"]),
                **({"kappa (quadratic)": ui.fmt(p["kappa_quadratic"])} if "kappa_quadratic" in p else {}),
            }
        )


st.subheader("Agreement")
ui.table(summary)
if pairs:
    ui.table(pairs, wrap={"coder a": 230, "coder b": 230}, lines=2)
    by_pair = {(p["a"], p["b"]): p for key in COMPARISONS if rep[key] for p in rep[key]["pairs"]}
    shown = st.selectbox(
        "Confusion between two coders",
        list(by_pair),
        format_func=lambda ab: f"{ab[0]} (rows) vs {ab[1]} (columns): {by_pair[ab]['n']:,} units",
        key="dis_pair",
    )
    conf = by_pair[shown]["confusion"]
    labels, matrix = conf["labels"], conf["matrix"]
    used = [i for i, lab in enumerate(labels) if sum(matrix[i]) or sum(r[i] for r in matrix)]
    if used:
        cells = [{"row": labels[i], "col": labels[j], "count": matrix[i][j]} for i in used for j in used]
        if rep["kind"] == "multi_label":
            st.caption("Label sets: one binary unit per (item, label), chosen or not by each coder.")
        ui.heatmap(cells, [labels[i] for i in used], rows=shown[0], cols=shown[1])

if coders["gold"] and coders["llm"]:
    st.subheader("Machine labels against gold")
    agent = None
    if len(coders["llm"]) > 1:  # one coder at a time: two labelers' labels pooled would score neither
        machine = st.selectbox(
            "Machine coder",
            coders["llm"],
            help=f"{len(coders['llm'])} machine coders labeled {task}: each is scored against gold on its own.",
            key=f"dis_agent_{task}",
        )
        agent = machine.split(":", 1)[1]  # coders are "<label source>:<agent>"
    audited = data.audit(url, sid, task, source, agent)
    metrics = audited.get("metrics")
    if metrics:
        single = metrics.get("single_gold") if rep["kind"] == "multi_label" else metrics
        shown_ci = {
            METRIC_TITLES.get(k, ui.words(k)): f"95 % CI [{v['ci_low']:.3f}, {v['ci_high']:.3f}]"
            for k, v in (audited.get("ci") or {}).items()
            if v.get("ci_low") is not None
        }
        st.caption(
            f"{audited['n']:,} pairs of machine labels and gold"
            + (f", {audited['excluded']:,} fitted ones left out" if audited.get("excluded") else "")
            + (" · " + " · ".join(f"{k} {v}" for k, v in shown_ci.items()) if shown_ci else "")
        )
        cols = st.columns(4)
        cols[0].metric("pairs", f"{audited['n']:,}")
        if rep["kind"] == "score":
            cols[1].metric("MAE", ui.fmt(metrics["mae"]))
            cols[2].metric("Spearman", ui.fmt(metrics["spearman"]))
            cols[3].metric("kappa (quadratic)", ui.fmt(metrics["kappa_quadratic"]))
        elif rep["kind"] == "multi_label":
            cols[1].metric("micro-F1", ui.fmt(metrics["micro_f1"]))
            cols[2].metric("macro-F1", ui.fmt(metrics["macro_f1"]))
            cols[3].metric("top-1 in gold", ui.fmt(metrics.get("top1_in_gold")))
        else:
            cols[1].metric("accuracy", ui.fmt(metrics["accuracy"]))
            cols[2].metric("macro-F1", ui.fmt(metrics["macro_f1"]))
            cols[3].metric("kappa", ui.fmt(metrics["kappa"]))
        confusion = (single or {}).get("confusion")
        if confusion:
            labels, matrix = confusion["labels"], confusion["matrix"]
            used = [i for i, lab in enumerate(labels) if sum(matrix[i]) or sum(r[i] for r in matrix)]
            cells = [{"row": labels[i], "col": labels[j], "count": matrix[i][j]} for i in used for j in used]
            title = "Confusion (rows gold, columns predicted" + (
                "; items with one gold label, top-1 prediction)" if rep["kind"] == "multi_label" else ")"
            )
            st.markdown(f"**{title}**")
            ui.heatmap(cells, [labels[i] for i in used], rows="gold", cols="predicted")

st.subheader("Units that disagree most")
available = [k for k in COMPARISONS if rep[k] and rep[k]["disagreements"]]
if not available:
    st.info("No unit disagrees in any comparison available here.")
    st.stop()
which = st.radio("Comparison", available, format_func=COMPARISONS.get, horizontal=True, key="dis_which")
worst = rep[which]["disagreements"]
texts = data.records_by_id(url, sid, tuple(sorted({w["record_id"] for w in worst})))


def _unit_text(w: dict) -> str:
    rec = texts.get(w["record_id"])
    if rec is None:
        return ""
    turns = rec["turns"]
    text = turns[w["turn"]]["text"] if w["turn"] is not None and w["turn"] < len(turns) else turns[0]["text"]
    return text if len(text) <= 200 else text[:199] + "…"


def _value_text(value: object) -> str:
    """A coder's value in a cell: label sets joined, a mean of ratings to two decimals."""
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def _unit_key(w: dict) -> str:
    return w["record_id"] if w["turn"] is None else f"{w['record_id']}#t{w['turn']}"


st.caption(
    "Worst first: *disagreement* is the share of coder pairs that differ on the unit (1: all differ); equal ones "
    "are ordered by *machine confidence*, the highest confidence a machine coder gave its label there, so a "
    "confident machine label that gold or a human contradicts comes first."
)
table = [
    {
        "unit": _unit_key(w),
        "disagreement": round(w["disagreement"], 3),
        "machine confidence": round(w.get("machine_confidence", 0.0), 3),
        "text": _unit_text(w),
        **{c: _value_text(v) for c, v in w["values"].items()},
    }
    for w in worst
]
coder_columns = [
    c for c in (table[0] if table else {}) if c not in ("unit", "disagreement", "machine confidence", "text")
]
kind_of = {c: CODER_KINDS.get(c.split(":", 1)[0], "machine") for c in coder_columns}
titles: dict[str, str] = {}  # short headers that fit; the full coder names are in the caption and the column help
for c, k in kind_of.items():
    same = [x for x in coder_columns if kind_of[x] == k]
    titles[c] = f"human: {c.split(':', 1)[1]}" if k == "human" else f"{k} {same.index(c) + 1}" if len(same) > 1 else k
st.caption("Coders: " + "; ".join(f"*{titles[c]}* is {c}" for c in coder_columns))
ui.table(
    table,
    wrap={"unit": 160, "text": 300, **dict.fromkeys(coder_columns, 110)},
    lines=5,
    max_rows=10,
    column_config={
        "disagreement": st.column_config.NumberColumn(width=95),
        "machine confidence": st.column_config.NumberColumn(width=130),
        **{c: st.column_config.TextColumn(titles[c], width=110, help=c) for c in coder_columns},
    },
)

st.markdown("**Send to Argilla review**")
keys = [row["unit"] for row in table]
chosen = st.multiselect("Units", keys, default=keys[: min(10, len(keys))], key=f"dis_units_{which}_{task}")
# the key carries the task and snapshot: a new task gets its own default name instead of keeping the last one
dataset = st.text_input(
    "Argilla dataset",
    value=ui.review_dataset_name(task, sid),
    key=f"dis_dataset_{task}_{sid[:8]}",
)
if st.button(f"Send {len(chosen)} units to Argilla", type="primary", disabled=not chosen, key="dis_send"):
    try:
        with st.spinner("Pushing to Argilla..."):
            pushed = data.send_to_review(url, sid, task, chosen, dataset)
    except WorkbenchError as exc:
        ui.argilla_error("send to Argilla", exc)
    else:
        st.success(f"Sent {pushed.records:,} units to dataset {pushed.dataset!r} at {pushed.api_url}.")
