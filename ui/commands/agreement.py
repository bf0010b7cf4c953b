"""``workbench review agreement``: human-human, human-LLM and LLM-gold agreement of a snapshot's labels."""

from __future__ import annotations

import json
import math
from typing import Any

import typer

from ui import state

_TITLES = {"human_human": "human-human", "human_llm": "human-machine", "llm_gold": "machine-gold"}


def agreement(
    ref: str = typer.Argument(..., help="A snapshot with human labels (id or ref), e.g. reviewed."),
    task: list[str] = typer.Option(
        None, "--task", help="emotion | strategy | empathy | trait.<name> ... (repeatable; default: every task)."
    ),
    top: int = typer.Option(10, "--top", min=0, help="Units that disagree most to list per comparison."),
    include_fitted: bool = typer.Option(
        False, "--include-fitted", help="Keep a labeler's labels on the records it was fitted on (memorised gold)."
    ),
    split: str = typer.Option(
        None, "--split", help="Only records of this split (train | validation | test); default: every split."
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Krippendorff's alpha and Cohen's kappa per pair of coders, per task, with the units that disagree most.

    A labeler's labels on the records it learnt from are left out (unless --include-fitted) and counted."""
    from labeling.agreement import agreement as compute
    from labeling.runner import fitted_on

    store = state.store()
    exclude = None if include_fitted else fitted_on(store, ref)["agents"]
    from curation import browse

    if split is not None and split not in ("train", "validation", "test"):
        raise typer.BadParameter(f"expected train, validation or test, got {split!r}", param_hint="--split")
    records = browse.iter_label_records(store, ref, fields=AGREEMENT_FIELDS)
    report = compute(records, task=task or None, top=top, exclude=exclude, split=split)
    if as_json:
        print(json.dumps(report, indent=1, default=str))
        return
    state.console().print(
        f"computed on: {'split ' + split if split else 'every split'}, {report['records']:,} records; "
        "95 % CIs: records resampled 1,000 times"
    )
    _print_report(report)
    if report.get("excluded_labels"):
        state.console().print(
            f"left out: {report['excluded_labels']:,} machine labels on records their labeler was fitted on "
            "(memorised gold; --include-fitted to keep them)"
        )


#: The label fields agreement reads (no raw text, no attrs beyond the review status).
AGREEMENT_FIELDS = ("task", "value", "score", "source", "agent", "turn", "attrs")


def _fmt(x: float | None) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.3f}"


def _ci(ci: dict[str, Any] | None) -> str:
    return "-" if not ci else f"[{ci['low']:.3f}, {ci['high']:.3f}]"


def _print_report(report: dict[str, Any]) -> None:
    from rich.table import Table

    con = state.console()
    if not report["tasks"]:
        con.print(f"no labels to compare in {report['records']:,} records")
    for name, rep in report["tasks"].items():
        con.print(
            f"[bold]{name}[/bold] ({rep['kind']}, {rep['level']} alpha): {rep['units']:,} units; "
            f"{len(rep['coders']['human'])} human, {len(rep['coders']['llm'])} machine (LLM or model), "
            f"{len(rep['coders']['gold'])} gold"
            + (f"; {rep['conflicts']:,} units where one coder gave several labels" if rep["conflicts"] else "")
        )
        summary = Table(title=f"{name}: agreement", title_justify="left")
        for col in ("comparison", "units", "alpha", "95 % CI", "over"):
            summary.add_column(col, justify="left" if col in ("comparison", "over") else "right")
        pairs = Table(title=f"{name}: pairs of coders", title_justify="left")
        for col in ("comparison", "coder a", "coder b", "n", "alpha", "95 % CI", "kappa"):
            pairs.add_column(col, justify="right" if col in ("n", "alpha", "95 % CI", "kappa") else "left")
        for key, title in _TITLES.items():
            comp = rep[key]
            if comp is None:
                summary.add_row(title, "-", "-", "-", "not enough coders")
                continue
            summary.add_row(
                title, f"{comp['units']:,}", _fmt(comp["alpha"]), _ci(comp.get("alpha_ci")), comp["alpha_over"]
            )
            for p in comp["pairs"]:
                kappa = _fmt(p["kappa"])
                if "kappa_quadratic" in p:
                    kappa += f" (quadratic {_fmt(p['kappa_quadratic'])})"
                pairs.add_row(title, p["a"], p["b"], f"{p['n']:,}", _fmt(p["alpha"]), _ci(p.get("alpha_ci")), kappa)
        con.print(summary)
        con.print(pairs)
        for key, title in _TITLES.items():
            comp = rep[key]
            if not comp or not comp["disagreements"]:
                continue
            worst = Table(title=f"{name}: {title}, units that disagree most", title_justify="left")
            for col in ("record", "turn", "disagreement", "machine conf.", "values"):
                worst.add_column(col, justify="right" if col in ("disagreement", "machine conf.") else "left")
            for row in comp["disagreements"]:
                values = "; ".join(
                    f"{coder}={','.join(v) if isinstance(v, list) else v}" for coder, v in row["values"].items()
                )
                turn = "-" if row["turn"] is None else str(row["turn"])
                confidence = f"{row.get('machine_confidence', 0.0):.2f}"
                worst.add_row(row["record_id"], turn, f"{row['disagreement']:.2f}", confidence, values)
            con.print(worst)
            con.print(
                "disagreement: the share of coder pairs that differ; ties ordered by the machine's confidence in its "
                "label (confident and contradicted first)"
            )
