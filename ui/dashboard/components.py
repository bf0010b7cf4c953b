"""Pieces every page shows: the snapshot picker, a record as a chat, the lineage graph, tables and heatmaps
that can be read in full, and errors in the page's words (no data logic here)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import altair as alt
import streamlit as st

from curation.errors import WorkbenchError
from ui.dashboard import data

SOURCE_ORDER = ("gold", "llm", "model", "human")
SOURCE_TITLES = {"gold": "gold (dataset)", "llm": "LLM", "model": "model", "human": "human"}
ANY = "(any)"
#: The comparisons of :func:`labeling.agreement.agreement` (its "llm" coders are every machine: LLMs and models).
COMPARISONS = {"llm_gold": "machine vs gold", "human_llm": "human vs machine", "human_human": "human vs human"}


def store_or_stop() -> str:
    """The store URL; stops the page with a hint when the store holds no snapshot yet."""
    url = data.store_url()
    if not data.lineage(url)["nodes"]:
        st.info(f"No snapshots in `{url}` yet. Run `workbench run` (the bundled examples) or `workbench ingest ...`.")
        st.stop()
    return url


def snapshot_label(node: Mapping[str, Any]) -> str:
    refs = ", ".join(node["refs"])
    return f"{refs + ' · ' if refs else ''}{node['id'][:12]} · {node['step'] or '?'} · {node['rows']:,} rows"


def pick_snapshot(
    url: str, *, label: str = "Snapshot", where: Any = None, prefer: Sequence[str] = (), follow_reviews: bool = False
) -> str:
    """A snapshot chosen in the sidebar, remembered across pages (``st.session_state["snapshot"]``).

    ``prefer``: ref names to default to, in order, when nothing was chosen yet (else ``latest``, else the newest).
    ``follow_reviews``: default to the newest review of the preferred snapshot instead (pages about labels).
    """
    where = where or st.sidebar
    lineage = data.lineage(url)
    nodes = list(reversed(lineage["nodes"]))  # newest first
    ids = [n["id"] for n in nodes]
    labels = {n["id"]: snapshot_label(n) for n in nodes}
    switch_to = st.session_state.pop("switch_to", None)  # a page wrote a snapshot and shows it next
    if switch_to in ids:
        st.session_state["snapshot"] = switch_to
        st.session_state["snapshot_picker"] = switch_to
    chosen = st.session_state.get("snapshot")
    if chosen not in ids:
        chosen = None
        for name in (*prefer, "latest"):
            sid = next((n["id"] for n in nodes if name in n["refs"]), None)
            if sid:
                chosen = newest_reviewed_descendant(lineage, sid) if follow_reviews else sid
                break
        chosen = chosen or ids[0]
    sid = where.selectbox(label, ids, index=ids.index(chosen), format_func=labels.get, key="snapshot_picker")
    st.session_state["snapshot"] = sid
    return sid


REVIEW_STEPS = ("review",)  # review pull and the Review page's saved answers


def newest_reviewed_descendant(lineage: Mapping[str, Any], sid: str) -> str:
    """The newest snapshot made from ``sid`` by review steps only (``sid`` itself when none is).

    After a review pull (or reviews saved on the Review page) the labeled snapshot has a child with the human
    answers: the pages that work on labels open on it, not on the older parent.
    """
    nodes = {n["id"]: n for n in lineage["nodes"]}
    order = {n["id"]: i for i, n in enumerate(lineage["nodes"])}  # oldest first
    children: dict[str, list[str]] = defaultdict(list)
    for a, b in lineage["edges"]:
        children[a].append(b)
    best, frontier = sid, [sid]
    while frontier:
        current = frontier.pop()
        for child in children.get(current, []):
            if nodes.get(child, {}).get("step") in REVIEW_STEPS:
                frontier.append(child)
                if order[child] > order[best]:
                    best = child
    return best


def lineage_dot(lineage: Mapping[str, Any], *, selected: str | None = None) -> str:
    """Graphviz DOT of snapshots (id, refs, step, rows, status) and their parent -> child edges."""
    lines = [
        "digraph lineage {",
        '  rankdir=LR; node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];',
    ]
    for n in lineage["nodes"]:
        refs = ", ".join(n["refs"])
        text = "\\n".join(x for x in (refs, n["id"][:12], f"{n['step'] or '?'} · {n['rows']:,} rows") if x)
        fill = "#c8e6c9" if n["status"] == "validated" else "#eeeeee"
        pen = ', penwidth=3, color="#1565c0"' if n["id"] == selected else ""
        lines.append(f'  "{n["id"]}" [label="{text}", fillcolor="{fill}"{pen}];')
    lines += [f'  "{a}" -> "{b}";' for a, b in lineage["edges"]]
    lines.append("}")
    return "\n".join(lines)


def _label_text(lab: Mapping[str, Any], *, with_task: bool = True) -> str:
    score = lab.get("score")
    shown = lab["value"] if score is None or lab["value"] == f"{score:g}" else f"{lab['value']} ({score:.2f})"
    return f"{lab['task']}: {shown}" if with_task else shown


def labels_by_turn(record: Mapping[str, Any]) -> dict[int | None, dict[str, list[Mapping[str, Any]]]]:
    """The record's labels by turn (None = record level), then by label source."""
    out: dict[int | None, dict[str, list[Mapping[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for lab in record.get("labels") or ():
        out[lab.get("turn")][lab["source"]].append(lab)
    return out


def render_record(
    record: Mapping[str, Any],
    *,
    highlight_turn: int | None = None,
    max_turns: int = 60,
    record_labels: bool = True,
) -> None:
    """A record as a chat (speaker avatars alternate), turn labels under each message, then record labels by source.

    With ``highlight_turn`` the chat stops at that turn (the conversation as it stood), marked.
    """
    by_turn = labels_by_turn(record)
    turns = record["turns"]
    if highlight_turn is not None:
        max_turns = min(max_turns, highlight_turn + 1)
    first = turns[0]["speaker"] if turns else ""
    context = record.get("context") or {}
    if context:
        brief = {k: v for k, v in context.items() if k in ("situation", "prompt", "topic", "problem_type")}
        if brief:
            st.caption(" · ".join(f"**{k}**: {v}" for k, v in brief.items()))
    for i, t in enumerate(turns[:max_turns]):
        role = "user" if t["speaker"] == first else "assistant"
        with st.chat_message(t["speaker"], avatar=role):
            text = t["text"] if len(t["text"]) <= 4000 else t["text"][:4000] + " …"
            if i == highlight_turn:
                st.markdown(f"**▶ turn {i}: the unit under review**")
            st.text(text)
            notes = [
                f"*{SOURCE_TITLES.get(src, src)}* " + ", ".join(_label_text(lab) for lab in labs)
                for src in SOURCE_ORDER
                if (labs := by_turn.get(i, {}).get(src))
            ]
            if notes:
                st.caption(" · ".join(notes))
    if len(turns) > max_turns:
        st.caption(f"… {len(turns) - max_turns} more turns")
    if not record_labels:
        return
    record_level = by_turn.get(None, {})
    present = [s for s in SOURCE_ORDER if record_level.get(s)]
    if present:
        cols = st.columns(len(present))
        for col, src in zip(cols, present, strict=True):
            with col:
                st.markdown(f"**{SOURCE_TITLES.get(src, src)} labels**")
                st.dataframe(
                    [
                        {"task": lab["task"], "value": lab["value"], "score": lab.get("score"), "agent": lab["agent"]}
                        for lab in record_level[src]
                    ],
                    hide_index=True,
                )


def flash(message: str) -> None:
    """Show ``message`` as a success at the top of the next run (after a write and ``st.rerun``)."""
    st.session_state["flash"] = message


def show_flash() -> None:
    message = st.session_state.pop("flash", None)
    if message:
        st.success(message)


def fmt(x: float | None, digits: int = 3) -> str:
    """A number for a table cell: ``-`` where undefined (NaN / None)."""
    if x is None or x != x:  # NaN
        return "-"
    return f"{x:.{digits}f}"


def agreement_summary(rep: Mapping[str, Any], **extra: Any) -> list[dict[str, Any]]:
    """One row per comparison of an agreement report (:func:`ui.dashboard.data.agreement`): units and alpha.

    ``extra`` columns come first (e.g. ``task=...`` where several tasks share a table).
    """
    rows = []
    for key, title in COMPARISONS.items():
        comp = rep.get(key)
        if comp is None:
            rows.append({**extra, "comparison": title, "units": None, "alpha": "-", "alpha over": "not enough coders"})
        else:
            rows.append(
                {
                    **extra,
                    "comparison": title,
                    "units": comp["units"],
                    "alpha": fmt(comp["alpha"]),
                    "alpha over": comp["alpha_over"],
                }
            )
    return rows


# ------------------------------------------------------------------ words for people


#: What the curation steps are called on pages (their registry names are for configs and logs).
STEP_TITLES = {
    "normalize": "Text normalisation",
    "turn_length": "Turn length",
    "min_turns": "Too few turns",
    "length": "Conversation length",
    "language": "Language",
    "quality": "Text quality",
    "pii": "Personal data",
    "resplit": "Re-splitting",
    "leak_free_splits": "Split leaks",
    "exact_dedup": "Exact duplicates",
    "near_dedup": "Near duplicates",
    "semantic_dedup": "Semantic duplicates",
    "safety": "Safety",
}


def words(name: str) -> str:
    """An identifier in words: ``exact_duplicate`` -> ``exact duplicate``, ``train->test`` unchanged."""
    return name.replace("_", " ").replace(".", " ").strip()


def step_title(name: str) -> str:
    """A curation step's name on a page: ``exact_dedup`` -> ``Exact duplicates``."""
    known = STEP_TITLES.get(name.removeprefix("curate."))
    return known or words(name.removeprefix("curate.")).capitalize()


def artifact_title(name: str) -> str:
    """A curation artifact's name as a heading: ``exact_dedup.clusters`` -> ``Exact duplicates: clusters``,
    ``leak_free_splits.leaks`` -> ``Split leaks``."""
    step, _, what = name.partition(".")
    title = step_title(step)
    return f"{title}: {words(what)}" if what and words(what).lower() not in title.lower() else title


# ------------------------------------------------------------------ tables and charts that show everything

ROW = 35  # px: a table row of one line (Streamlit's default row height)
LINE = 18  # px: a line of wrapped text; a cell wraps only from three lines' height up (it cuts the text below)
PADDING = 14
HEADER = 38


def table(
    rows: Sequence[Mapping[str, Any]],
    *,
    wrap: Mapping[str, int] | None = None,
    lines: int = 3,
    max_rows: int = 25,
    column_config: Mapping[str, Any] | None = None,
    key: str | None = None,
) -> None:
    """Rows as a table nothing is cut from: tall enough for every row (up to ``max_rows``, then it scrolls),
    and the long-text columns in ``wrap`` (name -> width in px) wrapped over up to ``lines`` lines (3 at least),
    not cut. The widths of a table should add up to less than the page's width (about 900 px beside the sidebar),
    or the columns on the right scroll out of sight.
    """
    config: dict[str, Any] = {c: st.column_config.TextColumn(width=w) for c, w in (wrap or {}).items()}
    config.update(column_config or {})
    row_height = PADDING + LINE * max(lines, 3) if wrap else ROW
    height = HEADER + row_height * max(1, min(len(rows), max_rows)) + 2
    st.dataframe(
        list(rows), hide_index=True, height=height, row_height=row_height, column_config=config or None, key=key
    )


def heatmap(cells: Sequence[Mapping[str, Any]], order: Sequence[str], *, rows: str, cols: str) -> None:
    """Counts as a heatmap with every label written out in full.

    ``cells`` are {"row": value, "col": value, "count": n}; ``rows`` / ``cols`` are the axis titles. The
    cells grow with the number of labels instead of the labels being cut to fit (``labelLimit=0``).
    """
    step = 44 if len(order) <= 10 else 28
    base = alt.Chart(alt.Data(values=list(cells))).encode(
        # labelOverlap off: slanted labels never touch, but their boxes do, and Vega would hide all but a few
        x=alt.X("col:N", sort=list(order), title=cols, axis=alt.Axis(labelLimit=0, labelAngle=-45, labelOverlap=False)),
        y=alt.Y("row:N", sort=list(order), title=rows, axis=alt.Axis(labelLimit=0)),
    )
    top = max((c["count"] for c in cells), default=0)
    chart = (
        base.mark_rect().encode(
            color=alt.Color("count:Q", scale=alt.Scale(scheme="blues")),
            tooltip=[alt.Tooltip("row:N", title=rows), alt.Tooltip("col:N", title=cols), "count:Q"],
        )
        + base.mark_text(fontSize=10).encode(
            text="count:Q",
            color=alt.condition(alt.datum.count > top / 2, alt.value("white"), alt.value("black")),
        )
    ).properties(width=alt.Step(step), height=alt.Step(min(step, 26)))
    st.altair_chart(chart, width="content")


# ------------------------------------------------------------------ Argilla errors in the page's words


def argilla_error(what: str, exc: WorkbenchError, *, hint: str = "") -> None:
    """Say on the page that ``what`` failed and what to do about it, from this page (no command-line options)."""
    st.error(argilla_problem(what, exc, hint=hint))


def argilla_problem(what: str, exc: WorkbenchError, *, hint: str = "") -> str:
    """``what`` failed, why, and what to do from this page: :class:`ui.dashboard.data.ArgillaUnavailable`
    gets where it looked for a server and how to start one; ``hint`` is the advice for other failures.
    """
    reason = getattr(exc, "reason", None) or str(exc)  # a ReviewError's reason leaves out its CLI hint
    if isinstance(exc, data.ArgillaUnavailable):
        if exc.api_url is None:
            hint = (
                "`workbench review serve` starts a local Argilla server, and this page finds it without a restart. "
                "To use another server, start the dashboard with ARGILLA_API_URL and ARGILLA_API_KEY set."
            )
        elif exc.from_environment:
            hint = (
                f"No Argilla server answered at {exc.api_url}, the address in ARGILLA_API_URL when the dashboard "
                "started: start that server. `workbench review serve` starts a local one, which the dashboard "
                "uses when it is started without ARGILLA_API_URL."
            )
        else:
            hint = (
                f"No Argilla server answered at {exc.api_url}, the local server `workbench review serve` started: "
                "run `workbench review serve` again, and try again here."
            )
    return f"Could not {what}: {reason}" + (f"\n\n{hint}" if hint else "")


def review_dataset_name(task: str, pushed_from: str) -> str:
    """The Argilla dataset the Disagreements page sends ``task``'s units of snapshot ``pushed_from`` to."""
    return f"{task.replace('.', '-')}-{pushed_from[:8]}-disagreements"


def reviewed_from(lineage: Mapping[str, Any], sid: str) -> str:
    """The snapshot whose units were reviewed: ``sid``, or the nearest ancestor not made by a review step."""
    nodes = {n["id"]: n for n in lineage["nodes"]}
    current = sid
    while nodes.get(current, {}).get("step") in REVIEW_STEPS and nodes[current]["parents"]:
        current = nodes[current]["parents"][0]
    return current
