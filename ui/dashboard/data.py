"""The dashboard's data layer: library calls, cached on the snapshot id (snapshots never change).

Pages call only these functions; each is a thin wrapper over a library function
the CLI uses too (:mod:`curation.browse`, :mod:`curation.report`,
:mod:`curation.balance`, :mod:`labeling.agreement`, :mod:`labeling.audit`,
:mod:`labeling.corrections`, :mod:`labeling.review.sync`, :mod:`evaluate.results`).
Arguments are plain strings and numbers so ``st.cache_data`` can key on them;
refs are resolved to ids first (refs move, ids do not).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from curation import browse
from curation.errors import WorkbenchError
from curation.store import SnapshotStore, default_store_url

#: Pages and filtered row sets kept per session server; old ones are evicted.
_MAX_ENTRIES = 64


def store_url() -> str:
    """The store the dashboard reads: ``WORKBENCH_STORE`` (``workbench dashboard --store`` sets it)."""
    return default_store_url()


def runs_dir() -> Path | None:
    from evaluate.results import default_runs_dir

    return default_runs_dir(store_url())


@st.cache_resource(show_spinner=False)
def store(url: str) -> SnapshotStore:
    return SnapshotStore(url)


# ------------------------------------------------------------------ snapshots


def lineage(url: str) -> dict[str, Any]:
    """Snapshots and refs (not cached: refs move and new snapshots appear; reading manifests is cheap)."""
    return browse.lineage(store(url))


def resolve(url: str, ref: str) -> str:
    return store(url).resolve(ref)


@st.cache_data(show_spinner=False, max_entries=_MAX_ENTRIES)
def manifest(url: str, sid: str) -> dict[str, Any]:
    return store(url).manifest(sid)


@st.cache_data(show_spinner=False, max_entries=_MAX_ENTRIES)
def ancestors(url: str, sid: str) -> list[str]:
    return browse.ancestors(store(url), sid)


@st.cache_data(show_spinner="Filtering records...", max_entries=_MAX_ENTRIES)
def matching_rows(url: str, sid: str, **flt: str | None) -> np.ndarray:
    return browse.matching_rows(store(url), sid, browse.RecordFilter(**flt))


@st.cache_data(show_spinner=False, max_entries=_MAX_ENTRIES)
def page(url: str, sid: str, page_no: int, page_size: int, **flt: str | None) -> browse.RecordPage:
    rows = matching_rows(url, sid, **flt)
    return browse.read_page(store(url), sid, page=page_no, page_size=page_size, rows=rows)


@st.cache_data(show_spinner=False, max_entries=_MAX_ENTRIES)
def records_by_id(url: str, sid: str, ids: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    return browse.records_by_id(store(url), sid, ids)


# ------------------------------------------------------------------ distributions


@st.cache_data(show_spinner="Reading score labels...", max_entries=_MAX_ENTRIES)
def score_histograms(url: str, sid: str, source: str | None = None) -> list[dict[str, Any]]:
    return browse.score_histograms(store(url), sid, source=source)


@st.cache_data(show_spinner=False, max_entries=_MAX_ENTRIES)
def balance(url: str, sid: str, before: tuple[str, ...]) -> list[dict[str, Any]]:
    """Balance rows before (summed over ``before``) and after, with imbalance ratios (as ``workbench report``)."""
    from curation.balance import compare

    before_m = [manifest(url, b) for b in before]
    rows = []
    for b, a in compare(before_m, manifest(url, sid)):
        r = b or a
        rows.append(
            {
                "task": r.task,
                "label_source": r.label_source,
                "source": r.source,
                "split": r.split,
                "total_before": b.total if b else 0,
                "total_after": a.total if a else 0,
                "imbalance_before": b.imbalance if b else None,
                "imbalance_after": a.imbalance if a else None,
                "majority_after": f"{a.majority[0]} ({a.majority[1]:,})" if a else "",
                "minority_after": f"{a.minority[0]} ({a.minority[1]:,})" if a else "",
                "missing_after": len(a.missing) if a else None,
            }
        )
    return rows


# ------------------------------------------------------------------ agreement, audit, review


def _label_records(url: str, sid: str, source: str | None) -> Any:
    records = browse.iter_label_records(store(url), sid)
    return (r for r in records if source is None or r["source"] == source)


@st.cache_data(show_spinner="Computing agreement (once per snapshot and task)...", max_entries=_MAX_ENTRIES)
def agreement(url: str, sid: str, task: str, source: str | None = None, top: int = 50) -> dict[str, Any]:
    """One task's agreement; machine labels on the records their labeler was fitted on are left out (counted)."""
    from labeling.agreement import agreement as compute
    from labeling.runner import fitted_on

    exclude = fitted_on(store(url), sid)["agents"]
    report = compute(_label_records(url, sid, source), task=task, top=top, exclude=exclude)
    return {**report["tasks"][task], "excluded_labels": report["excluded_labels"]}


@st.cache_data(show_spinner="Auditing against gold...", max_entries=_MAX_ENTRIES)
def audit(url: str, sid: str, task: str, source: str | None = None, agent: str | None = None) -> dict[str, Any]:
    """One machine coder's labels (``agent``; every machine label when None) against gold, never on the
    records the labeler was fitted on (counted in ``excluded``)."""
    from labeling.audit import audit as run_audit
    from labeling.runner import fitted_on

    exclude = fitted_on(store(url), sid)["agents"]
    return run_audit(_label_records(url, sid, source), task, agent=agent, exclude=exclude)


@st.cache_data(show_spinner="Listing units...", max_entries=_MAX_ENTRIES)
def review_queue(url: str, sid: str, task: str, only: str, reviewer: str | None) -> list[Any]:
    from labeling.corrections import review_queue as queue

    return queue(browse.iter_label_records(store(url), sid), task, only=only, reviewer=reviewer)  # type: ignore[arg-type]


def save_reviews(url: str, sid: str, reviews: list[dict[str, Any]], reviewer: str, tag: str | None) -> str:
    """Write the reviews into a new snapshot (:func:`labeling.corrections.apply_reviews`); its id."""
    from labeling.corrections import Review, apply_reviews

    items = [Review.of(r["record_id"], r["task"], r["values"], turn=r["turn"], action=r["action"]) for r in reviews]
    return apply_reviews(store(url), sid, items, reviewer=reviewer, tag=tag or None)


class ArgillaUnavailable(WorkbenchError):
    """No Argilla server to talk to: none is configured (``api_url`` None), or none answered at ``api_url``.

    ``from_environment``: the address came from ARGILLA_API_URL (else from the file `workbench review serve`
    writes), so a page can say how to get a server there.
    """

    def __init__(self, message: str, *, api_url: str | None = None, from_environment: bool = False) -> None:
        super().__init__(message)
        self.api_url = api_url
        self.from_environment = from_environment


class PullNeedsParent(WorkbenchError):
    """The dataset does not name one snapshot of this store it was pushed from: the page has to name one."""


def _review_sync() -> Any:
    """labeling.review.sync, imported when a page first talks to Argilla (the SDK is an optional extra)."""
    try:
        from labeling.review import sync
    except ImportError as exc:
        raise WorkbenchError(
            f"Argilla review is not installed ({exc}): pip install -e '.[review]' and start `workbench review serve`"
        ) from None
    return sync


def _click_retry(sync: Any) -> Any:
    """A click should fail fast, not retry for a minute."""
    return sync.Retry(attempts=2, backoff=0.2, max_backoff=1.0)


def argilla_credentials() -> Any:
    """Where the Argilla server is, found as the CLI finds it (:func:`labeling.review.sync.resolve_credentials`:
    ARGILLA_API_URL / ARGILLA_API_KEY, else the local server's credentials file). No network call.
    """
    sync = _review_sync()
    try:
        return sync.resolve_credentials()
    except sync.ReviewError as exc:
        raise ArgillaUnavailable(exc.reason) from None


def _no_answer(exc: BaseException) -> bool:
    """Whether no server answered (refused, unreachable, timed out), as opposed to one answering with an error."""
    import httpx

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, httpx.TransportError):
            return True
        current = current.__cause__ or current.__context__
    return False


def _argilla_call(sync: Any, credentials: Any, fn: Any) -> Any:
    """``fn()``, with the sync module's errors made page errors: no answer -> ArgillaUnavailable (with the URL)."""
    try:
        return fn()
    except ImportError as exc:  # the argilla SDK, imported by the sync functions themselves
        raise WorkbenchError(f"the Argilla SDK is not installed ({exc}): pip install -e '.[review]'") from None
    except sync.UnknownParentError as exc:
        raise PullNeedsParent(exc.reason) from exc
    except sync.ReviewError as exc:
        if _no_answer(exc):
            from_env = credentials.origin.startswith(("ARGILLA_API_URL", "--api-url"))
            raise ArgillaUnavailable(exc.reason, api_url=credentials.api_url, from_environment=from_env) from exc
        raise


def send_to_review(url: str, sid: str, task: str, units: list[str], dataset: str) -> Any:
    """Push chosen units (``record`` / ``record#t<turn>``) of ``task`` to Argilla (:func:`labeling.review.sync.push`).

    Imported here, at click time: the Argilla SDK loads only when a push is asked for.
    Raises :class:`ArgillaUnavailable` when no server is configured or none answers, and
    :class:`curation.errors.WorkbenchError` (the sync module's ``ReviewError``) when it fails.
    """
    sync = _review_sync()
    credentials = argilla_credentials()
    return _argilla_call(
        sync,
        credentials,
        lambda: sync.push(
            sid,
            store=store(url),
            tasks=[task],
            name=dataset,
            credentials=credentials,
            units=units,
            retry=_click_retry(sync),
        ),
    )


def pull_answers(
    url: str, dataset: str, *, parent: str | None = None, tag: str | None = None, progress: Any = None
) -> Any:
    """Every answer of Argilla dataset ``dataset`` as human labels in a NEW snapshot, as `workbench review pull`
    (:func:`labeling.review.sync.pull`): a child of the snapshot the dataset was pushed from, or of ``parent``.

    ``progress(done, total)`` is called as the dataset's records are read. Returns the pull's result (its new
    snapshot id, counts of answers and labels). Raises :class:`ArgillaUnavailable`, :class:`PullNeedsParent`
    when the dataset does not say which snapshot of this store it came from, or WorkbenchError.
    """
    sync = _review_sync()
    credentials = argilla_credentials()
    return _argilla_call(
        sync,
        credentials,
        lambda: sync.pull(
            dataset,
            store=store(url),
            credentials=credentials,
            parent=parent,
            tag=tag,
            retry=_click_retry(sync),
            progress=progress,
        ),
    )


def argilla_status() -> list[dict[str, Any]]:
    """Every Argilla dataset with its progress (:func:`labeling.review.sync.review_status`, as `review list`).

    Not cached: annotators answer while the page is open. Raises ArgillaUnavailable (where it looked) or
    WorkbenchError (what failed).
    """
    sync = _review_sync()
    credentials = argilla_credentials()
    datasets = _argilla_call(sync, credentials, lambda: sync.review_status(credentials, retry=_click_retry(sync)))
    return [{**d.to_dict(), "api_url": credentials.api_url} for d in datasets]


# ------------------------------------------------------------------ curation report, results


@st.cache_data(show_spinner="Building the curation report...", max_entries=_MAX_ENTRIES)
def report(url: str, sid: str, examples: int = 5) -> dict[str, Any]:
    from curation.report import build_report

    return build_report(store(url), sid, examples=examples)


@st.cache_data(show_spinner=False, ttl=10)
def results(runs: str | None) -> Any:
    """Evaluation reports and training runs (cached briefly: files appear while training runs)."""
    from evaluate.results import find_results

    return find_results(runs)
