"""Review: accept or correct labels unit by unit; the answers become human labels in a NEW snapshot."""

from __future__ import annotations

import streamlit as st

from curation import browse, vocabularies
from curation.errors import WorkbenchError
from labeling.audit import SCORE_SCALES, task_kind
from ui.dashboard import components as ui
from ui.dashboard import data

FILTER_TITLES = {
    "disagreements": "machine ≠ gold",
    "unreviewed": "not reviewed by me",
    "all": "all units",
}

url = ui.store_or_stop()
sid = ui.pick_snapshot(url, prefer=("labeled",), follow_reviews=True)
m = data.manifest(url, sid)
reviewer = st.sidebar.text_input(
    "Reviewer (your name)", value=st.session_state.get("reviewer", ""), key="reviewer_input"
).strip()
st.session_state["reviewer"] = reviewer

st.header("Review")
ui.show_flash()
with st.expander("Review in Argilla: datasets and their progress"):
    st.caption(
        "Push units from the Disagreements page or `workbench review push`; annotators answer in Argilla; "
        "`workbench review pull DATASET --tag T` brings the answers back as human labels in a new snapshot."
    )
    if st.button("Show Argilla progress", key="rev_argilla"):
        try:
            rows = data.argilla_status()
        except WorkbenchError as exc:
            st.error(f"Could not read Argilla: {exc}")
        else:
            if not rows:
                st.info("No Argilla dataset yet.")
            else:
                st.caption(f"Argilla at {rows[0]['api_url']}")
                st.dataframe(
                    [
                        {
                            "dataset": r["name"],
                            "workspace": r["workspace"],
                            "records": r["records"],
                            "completed": r["completed"],
                            "pending": r["pending"],
                            "done": f"{r['completed'] / r['records']:.0%}" if r["records"] else "-",
                            "annotators (submitted/draft/discarded)": ", ".join(
                                f"{n} {c['submitted']}/{c['draft']}/{c['discarded']}"
                                for n, c in sorted(r["annotators"].items())
                            ),
                            "from snapshot": ", ".join(x[:12] for x in r["snapshots"]),
                        }
                        for r in rows
                    ],
                    hide_index=True,
                    key="rev_argilla_table",
                )
pending: dict[str, dict] = st.session_state.setdefault("pending_reviews", {})


def _kind(task: str) -> str | None:
    try:
        return task_kind(task)
    except WorkbenchError:
        return None


labeled = browse.label_tasks(m)
tasks = [t for t, srcs in labeled.items() if _kind(t) and ({"gold", "llm", "model"} & set(srcs))]
tasks.sort(key=lambda t: not ({"llm", "model"} & set(labeled[t])))  # tasks with machine labels first
if not tasks:
    st.info(f"Snapshot {sid[:12]} has no labels to review. Label it first: `workbench label REF --task ...`.")
    st.stop()
c1, c2 = st.columns([1, 2])
task = c1.selectbox("Task", tasks, key="rev_task")
only = c2.radio("Units", list(FILTER_TITLES), format_func=FILTER_TITLES.get, horizontal=True, key="rev_only")
if only == "unreviewed" and not reviewer:
    st.warning("Enter your name in the sidebar to list the units you have not reviewed.")
    st.stop()
kind = _kind(task)
queue = data.review_queue(url, sid, task, only, reviewer if only == "unreviewed" else None)
if not queue:
    st.info(f"No unit of {task} to show here ({FILTER_TITLES[only]}).")
else:
    signature = (sid, task, only, reviewer if only == "unreviewed" else None)
    if st.session_state.get("rev_signature") != signature:
        st.session_state["rev_signature"] = signature
        st.session_state["rev_pos"] = 1
    goto = st.session_state.pop("rev_goto", None)  # set by an answer: the next unit
    st.session_state["rev_pos"] = min(goto or st.session_state.get("rev_pos", 1), len(queue))
    pos = st.number_input(f"Unit (of {len(queue):,})", min_value=1, max_value=len(queue), step=1, key="rev_pos")
    unit = queue[int(pos) - 1]
    pending_key = f"{sid}|{task}|{unit.key}"

    st.markdown(
        f"**{unit.key}** · {unit.source} / {unit.split}"
        + (" · :orange[machine ≠ gold]" if unit.disagrees else "")
        + (" · :green[answered, not saved yet]" if pending_key in pending else "")
    )
    cols = st.columns(3)
    cols[0].markdown("**gold**\n\n" + (", ".join(unit.gold) or "none"))
    agents = f"  \n*{', '.join(unit.machine_agents)}*" if unit.machine_agents else ""
    cols[1].markdown("**machine**\n\n" + (", ".join(unit.machine) or "none") + agents)
    cols[2].markdown("**human**\n\n" + ("; ".join(f"{a}: {', '.join(v)}" for a, v in unit.human.items()) or "none"))
    record = data.records_by_id(url, sid, (unit.record_id,)).get(unit.record_id)
    if record is not None:
        ui.render_record(record, highlight_turn=unit.turn, record_labels=False)

    suggestion = list(unit.machine or unit.gold)
    widget_key = f"rev_answer|{pending_key}"
    if kind == "score":
        low, high = SCORE_SCALES["trait" if task.startswith("trait.") else task]
        start = round(float(suggestion[0])) if suggestion else low
        scale = list(range(low, high + 1))
        answer = [str(st.select_slider("Your score", scale, value=min(high, max(low, start)), key=widget_key))]
    elif kind == "multi_label":
        labels = vocabularies.load(task).labels
        answer = st.multiselect("Your labels", labels, default=[v for v in suggestion if v in labels], key=widget_key)
    else:
        labels = vocabularies.load(task).labels
        index = labels.index(suggestion[0]) if suggestion and suggestion[0] in labels else 0
        answer = [st.selectbox("Your label", labels, index=index, key=widget_key)]

    base = {"record_id": unit.record_id, "turn": unit.turn, "task": task, "snapshot": sid}
    machine_answer = list(unit.machine[:1]) if kind != "multi_label" else list(unit.machine)
    b1, b2, b3 = st.columns(3)
    if b1.button("Accept machine label", disabled=not unit.machine, key="rev_accept"):
        pending[pending_key] = {**base, "values": machine_answer, "action": "accept"}
        st.session_state["rev_goto"] = int(pos) + 1
        st.rerun()
    if b2.button("Save my answer", type="primary", disabled=not answer, key="rev_correct"):
        pending[pending_key] = {**base, "values": answer, "action": "correct"}
        st.session_state["rev_goto"] = int(pos) + 1
        st.rerun()
    if b3.button("Skip", key="rev_skip"):
        st.session_state["rev_goto"] = int(pos) + 1
        st.rerun()

mine = {k: v for k, v in pending.items() if v["snapshot"] == sid}
st.subheader(f"Answers not saved yet: {len(mine)}")
if mine:
    st.dataframe(
        [
            {"unit": k.split("|", 2)[2], "task": v["task"], "answer": ", ".join(v["values"]), "action": v["action"]}
            for k, v in mine.items()
        ],
        hide_index=True,
    )
    tag = st.text_input("Tag for the new snapshot (optional)", key="rev_tag", placeholder="reviewed")
    s1, s2 = st.columns(2)
    if s1.button(f"Save {len(mine)} answers as a new snapshot", type="primary", disabled=not reviewer, key="rev_save"):
        try:
            new_id = data.save_reviews(url, sid, list(mine.values()), reviewer, tag.strip() or None)
        except WorkbenchError as exc:
            st.error(str(exc))
        else:
            for k in mine:
                pending.pop(k, None)
            ui.flash(f"Saved {len(mine)} answers by {reviewer} as snapshot {new_id} (child of {sid[:12]}).")
            st.session_state["switch_to"] = new_id
            st.rerun()
    if not reviewer:
        s1.caption("Enter your name in the sidebar to save.")
    if s2.button("Discard these answers", key="rev_discard"):
        for k in mine:
            pending.pop(k, None)
        st.rerun()
