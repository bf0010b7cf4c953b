"""Pieces every page shows: the snapshot picker, a record as a chat, the lineage graph (no data logic here)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import streamlit as st

from ui.dashboard import data

SOURCE_ORDER = ("gold", "llm", "model", "human")
SOURCE_TITLES = {"gold": "gold (dataset)", "llm": "LLM", "model": "model", "human": "human"}
ANY = "(any)"


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
