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

#: Pull counters of answers that did not become labels, in words (see labeling.review.sync.pull).
NOT_WRITTEN = {
    "invalid_values": "answers outside a question's options",
    "unknown_questions": "answers to questions the workbench does not know",
    "unmatched_records": "records not in the snapshot",
    "labels_outside_turns": "labels on turns the record does not have",
}

url = ui.store_or_stop()
sid = ui.pick_snapshot(url, prefer=("labeled", "example-labeled"), follow_reviews=True)
m = data.manifest(url, sid)
lineage = data.lineage(url)
reviewer = st.sidebar.text_input(
    "Reviewer (your name)", value=st.session_state.get("reviewer", ""), key="reviewer_input"
).strip()
st.session_state["reviewer"] = reviewer


def _kind(task: str) -> str | None:
    try:
        return task_kind(task)
    except WorkbenchError:
        return None


labeled = browse.label_tasks(m)
tasks = [t for t, srcs in labeled.items() if _kind(t) and ({"gold", "llm", "model"} & set(srcs))]
tasks.sort(key=lambda t: not ({"llm", "model"} & set(labeled[t])))  # tasks with machine labels first

st.header("Review")
ui.show_flash()


def _pulled_agreement(pulled: dict) -> None:
    """What the answers just pulled bring: agreement of every task humans answered, in the new snapshot."""
    st.subheader(f"Agreement after pulling {pulled['dataset']!r}")
    if pulled["not_written"]:
        st.warning(
            "Not written as labels: "
            + "; ".join(f"{n:,} {NOT_WRITTEN.get(k, ui.words(k))}" for k, n in pulled["not_written"].items())
        )
    answered = [t for t, srcs in labeled.items() if "human" in srcs and _kind(t)]
    rows = [row for t in answered for row in ui.agreement_summary(data.agreement(url, sid, t), task=t)]
    if rows:
        ui.table(rows)
        st.caption(
            "Krippendorff's alpha of the human answers with the machine labels, with each other, and of the machine "
            "labels with gold, in this snapshot; the Disagreements page shows the confusion and the units that "
            "disagree most."
        )
    else:
        st.info("None of the answers became a label (see above), so there is no agreement to show yet.")


pulled = st.session_state.get("pulled")
if pulled and pulled["snapshot"] == sid:
    _pulled_agreement(pulled)


def _progress_panel() -> None:
    st.caption(
        "Push units from the Disagreements page; annotators answer in Argilla; pull their answers back below, "
        "as human labels in a new snapshot."
    )
    if st.button("Show Argilla progress", key="rev_argilla"):
        try:
            st.session_state["argilla_rows"] = data.argilla_status()
        except WorkbenchError as exc:
            ui.argilla_error("read Argilla", exc)
            return
    rows = st.session_state.get("argilla_rows")
    if rows is None:
        return
    if not rows:
        st.info("No Argilla dataset yet.")
        return
    st.caption(f"Argilla at {rows[0]['api_url']}")
    ui.table(
        [
            {
                "dataset": r["name"],
                "workspace": r["workspace"],
                "records": r["records"],
                "completed": r["completed"],
                "pending": r["pending"],
                "done": f"{r['completed'] / r['records']:.0%}" if r["records"] else "-",
                "annotators (submitted/draft/discarded)": ", ".join(
                    f"{n} {c['submitted']}/{c['draft']}/{c['discarded']}" for n, c in sorted(r["annotators"].items())
                ),
                "from snapshot": ", ".join(x[:12] for x in r["snapshots"]),
            }
            for r in rows
        ],
        wrap={"dataset": 200, "annotators (submitted/draft/discarded)": 200, "from snapshot": 110},
        lines=2,
        key="rev_argilla_table",
    )


def _pull(dataset: str, tag: str | None, parent: str | None) -> None:
    """Pull with a progress bar; on success, say what came back and switch the page to the new snapshot."""
    failure = None
    with st.status(f"Pulling the answers of {dataset!r} from Argilla...", expanded=True) as status:
        bar = st.progress(0.0, text="Connecting to Argilla...")

        def progress(done: int, total: int) -> None:
            text = f"Read {done:,} of {total:,} records" + ("; writing the new snapshot..." if done >= total else "")
            bar.progress(done / total if total else 1.0, text=text)

        try:
            result = data.pull_answers(url, dataset, parent=parent, tag=tag, progress=progress)
        except WorkbenchError as exc:
            status.update(label=f"Could not pull {dataset!r}", state="error")
            failure = exc
        else:
            status.update(label=f"Pulled {dataset!r}: snapshot {result.snapshot_id[:12]}", state="complete")
    if failure is not None:
        hint = ""
        if isinstance(failure, data.PullNeedsParent):
            hint = f"Tick *Add the answers to the snapshot shown here* to add them to {sid[:12]}."
        ui.argilla_error(f"pull the answers of {dataset!r}", failure, hint=hint)
        return
    statuses = ", ".join(
        f"{result.counters[f'responses.{s}']:,} {s}"
        for s in ("submitted", "draft", "discarded")
        if result.counters[f"responses.{s}"]
    )
    ui.flash(
        f"Pulled {result.responses:,} answers ({statuses or 'none'}) by {len(result.annotators)} annotators "
        f"({', '.join(result.annotators) or '-'}) from dataset {result.dataset!r} at {result.api_url}: "
        f"{result.labels:,} human labels in snapshot {result.snapshot_id}"
        + (f" ({result.tag})" if result.tag else "")
        + f", child of {result.parent[:12]}."
        + (" The same labels were already stored: no new data." if result.reused else "")
    )
    st.session_state["pulled"] = {
        "snapshot": result.snapshot_id,
        "dataset": result.dataset,
        "not_written": {k: n for k, n in sorted(result.counters.items()) if k in NOT_WRITTEN and n},
    }
    st.session_state["switch_to"] = result.snapshot_id
    st.rerun()


def _pull_panel() -> None:
    st.markdown("**Pull answers from Argilla**")
    st.caption(
        "Every answer in the dataset (submitted, draft or discarded) becomes a human label in a new snapshot, as "
        "`workbench review pull` does; this page then opens on it and shows the agreement the answers bring."
    )
    try:
        server = data.argilla_credentials()
    except WorkbenchError as exc:
        st.info(ui.argilla_problem("find an Argilla server", exc))  # none set up yet: not a failure of this page
        return
    base = ui.reviewed_from(lineage, sid)  # the snapshot pushed to Argilla, where a review child is shown
    known = st.session_state.get("argilla_rows")
    if known:
        info = {d["name"]: d for d in sorted(known, key=lambda d: base not in d["snapshots"])}  # pushed from here 1st
        dataset = st.selectbox(
            f"Argilla dataset (at {server.api_url})",
            list(info),
            format_func=lambda n: (
                f"{n} · {info[n]['completed']:,} of {info[n]['records']:,} records done"
                + (" · pushed from this snapshot" if base in info[n]["snapshots"] else "")
            ),
            key="rev_pull_pick",
        )
    else:
        task_now = st.session_state.get("rev_task")
        task_now = task_now if task_now in tasks else (tasks[0] if tasks else "")
        dataset = st.text_input(
            f"Argilla dataset (at {server.api_url})",
            value=ui.review_dataset_name(task_now, base) if task_now else "",
            help="The name the Disagreements page gives; *Show Argilla progress* lists the server's datasets.",
            key=f"rev_pull_dataset_{task_now}_{base[:8]}",
        )
    tag = st.text_input("Tag for the new snapshot (optional)", key="rev_pull_tag", placeholder="reviewed")
    here = st.checkbox(
        f"Add the answers to the snapshot shown here ({sid[:12]}), not to the one the dataset was pushed from",
        key="rev_pull_here",
    )
    if st.button("Pull answers from Argilla", type="primary", disabled=not dataset.strip(), key="rev_pull"):
        _pull(dataset.strip(), tag.strip() or None, sid if here else None)


with st.expander("Review in Argilla: progress, and pulling the answers back", expanded=bool(pulled)):
    _progress_panel()
    _pull_panel()
pending: dict[str, dict] = st.session_state.setdefault("pending_reviews", {})

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
    ui.table(
        [
            {"unit": k.split("|", 2)[2], "task": v["task"], "answer": ", ".join(v["values"]), "action": v["action"]}
            for k, v in mine.items()
        ],
        wrap={"unit": 260, "answer": 300},
        lines=2,
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
