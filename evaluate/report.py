"""The evaluation report: every metric with its CI and n, every base-to-tuned delta with its test and verdict.

:func:`analyse` turns an :class:`~evaluate.run.Evaluation` into one JSON-able dict:
``metrics`` in the results format the dashboard's Results page reads
(:mod:`evaluate.results`), ``comparisons`` (one per metric and tuned model: the
paired delta, its CI, the test, the Holm-adjusted p-value across the report's
family of comparisons, the verdict, the minimum detectable effect at this n and
the prompts needed to detect the observed delta), the per-class F1 and confusion
matrices, seed 004's two trait-MSE tables, the safety pass rates per category,
examples of failures, and the lineage (export, snapshot, evaluation snapshot,
models with adapter hashes, judge and prompt versions, decoding, seeds).

:func:`write_report` writes it as ``eval.json`` (the name the dashboard's Results
page looks for), ``eval.md`` and a self-contained ``eval.html`` (PNG charts inlined; matplotlib, the ``evaluate``
extra), atomically (each file written beside and renamed).
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from curation.errors import WorkbenchError
from evaluate import metrics as M

SEED_003 = {"emotion_accuracy": 0.472, "emotion_macro_f1": 0.44, "strategy_accuracy": 0.583, "strategy_macro_f1": 0.56}
SEED_003_NOTE = (
    "seed report 003's figures (Qwen3-8B heads, single-label emotion, weighted F1): a reference point, not the "
    "same task or data"
)


@dataclass(frozen=True)
class Written:
    json: Path
    markdown: Path
    html: Path
    summary_lines: list[str]


def analyse(
    ev: Any, *, resamples: int = 2000, seed: int = 0, agreement: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The report dict (see the module docstring); ``agreement``: human raters against the judge, when any rated."""
    from evaluate import stats

    clusters = ev.clusters
    rows: list[dict[str, Any]] = []
    comparisons: list[Any] = []
    estimates: dict[str, dict[str, dict[str, Any]]] = {}
    tuned_models = [m for m in ev.replies if m != ev.base]
    samples = M.samples(ev)
    for sample in samples:
        for model, values in sample.values.items():
            if not values or sample.kind == "win_rate":
                continue
            ids = sorted(values)
            cl = [clusters[i] for i in ids]
            if sample.kind == "macro_f1":
                gold = [values[i][0] for i in ids]
                pred = [values[i][1] for i in ids]
                est = stats.bootstrap_statistic(
                    M.macro_f1_statistic(sample.labels), gold, pred, clusters=cl, resamples=resamples, seed=seed
                )
            elif all(v in (0, 1, 0.0, 1.0) for v in values.values()) and (
                sample.metric.endswith(("_valid", "_accuracy", "_pass")) or "flip" in sample.metric
            ):
                est = stats.bootstrap_proportion([values[i] for i in ids], clusters=cl, resamples=resamples, seed=seed)
            else:
                est = stats.bootstrap_mean([values[i] for i in ids], clusters=cl, resamples=resamples, seed=seed)
            estimates.setdefault(sample.metric, {})[model] = est.to_dict()
            row = {"metric": sample.metric, "model": model, "value": est.value, "n": est.n}
            if est.value is None:
                continue
            if est.ci_low is not None:
                row["ci_low"], row["ci_high"] = est.ci_low, est.ci_high
            if sample.higher_is_better is not None:
                row["higher_is_better"] = sample.higher_is_better
            rows.append(row)
        if sample.kind == "win_rate":
            for model, outcomes in sample.values.items():
                c = stats.compare_win_rate(
                    f"{sample.metric}:{model}", outcomes, clusters=clusters, resamples=resamples, seed=seed
                )
                comparisons.append((model, sample, c))
                if c.tuned is not None and c.tuned.value is not None:
                    row = {"metric": sample.metric, "model": model, "value": c.tuned.value, "n": c.tuned.n}
                    if c.tuned.ci_low is not None:
                        row["ci_low"], row["ci_high"] = c.tuned.ci_low, c.tuned.ci_high
                    row["higher_is_better"] = True
                    rows.append(row)
            continue
        if not sample.paired or ev.base is None or not sample.values.get(ev.base):
            continue
        for model in tuned_models:
            tuned = sample.values.get(model) or {}
            if not tuned:
                continue
            base = sample.values[ev.base]
            kwargs = {"clusters": clusters, "common_only": True, "resamples": resamples, "seed": seed}
            better = True if sample.higher_is_better is None else sample.higher_is_better
            name = f"{sample.metric}:{model}"
            if sample.kind == "macro_f1":
                c = stats.compare_statistic(
                    name, base, tuned, M.macro_f1_statistic(sample.labels), higher_is_better=better, **kwargs
                )
            elif all(v in (0, 1, 0.0, 1.0) for v in [*base.values(), *tuned.values()]) and sample.metric.endswith(
                ("_valid", "_accuracy", "_pass")
            ):
                c = stats.compare_proportions(name, base, tuned, higher_is_better=better, **kwargs)
            else:
                c = stats.compare_scores(name, base, tuned, higher_is_better=better, **kwargs)
            comparisons.append((model, sample, c))
    adjusted = stats.adjust_family([c for _, _, c in comparisons]) if comparisons else []
    comparison_rows = []
    for (model, sample, _), c in zip(comparisons, adjusted, strict=True):
        d = c.to_dict()
        d.update(metric=sample.metric, model=model, against=ev.base, suite=sample.suite, description=sample.description)
        comparison_rows.append(d)

    report = {
        "name": f"evaluation of export {ev.export_id}",
        "created_at": datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "snapshot": ev.snapshot_id,
        "evaluation_snapshot": ev.evaluation_snapshot,
        "export": ev.export_id,
        "models": {name: _describe(identity) for name, identity in ev.models.items()},
        "model_identities": ev.models,
        "base": ev.base,
        "judge": ev.judge,
        "judge_prompts": _judge_prompts(ev),
        "decoding": ev.decoding,
        "same_for_every_model": {
            "chat_template_sha256": sorted(
                {str(i.get("chat_template_sha256")) for i in ev.models.values() if i.get("chat_template_sha256")}
            ),
            "decoding": ev.decoding,
            "system_prompt": ev.options.system_prompt,
            "seed": ev.options.seed,
        },
        "options": {
            "suites": list(ev.options.suites),
            "limit": ev.options.limit,
            "seed": ev.options.seed,
            "system_prompt": ev.options.system_prompt,
        },
        "statistics": {
            "resamples": resamples,
            "seed": seed,
            "confidence": 0.95,
            "family": "Holm across every comparison in this report",
            "verdict": "improved / worse only when the Holm-adjusted p < 0.05 and the delta's CI excludes 0",
        },
        "prompts": {s: sum(1 for it in ev.items if it.suite == s) for s in ev.options.suites},
        "conversations": len({it.cluster for it in ev.items}),
        "metrics": rows,
        "estimates": estimates,
        "comparisons": comparison_rows,
        "missing": {s.metric: s.missing for s in samples if any(s.missing.values())},
        "descriptions": {s.metric: s.description for s in samples if s.description},
        "suites": {s.metric: s.suite for s in samples},
        "classification": _classification(ev),
        "traits": M.trait_table(ev) if any(it.kind == "traits" for it in ev.items) else {},
        "safety": _safety(ev),
        "judged": dict(M.judged_counts(ev)),
        "failures": M.failures(ev),
        "cache": {"generated": ev.generated, "from_cache": ev.cache_hits},
        "reference": {"seed_003": SEED_003, "note": SEED_003_NOTE},
        "judge_agreement": dict(agreement) if agreement else None,
    }
    return report


def _describe(identity: Mapping[str, Any]) -> str:
    parts = [str(identity.get(k)) for k in ("base_model", "adapter", "url", "model") if identity.get(k)]
    return " + ".join(parts) or str(identity.get("name", "?"))


def _judge_prompts(ev: Any) -> dict[str, str]:
    from evaluate.judge import PROMPTS

    kinds = {j.kind for j in ev.judgements}
    return {k: PROMPTS[k] for k in sorted(kinds)}


def _classification(ev: Any) -> dict[str, Any]:
    from curation import vocabularies

    out: dict[str, Any] = {}
    for kind in ("emotion", "strategy"):
        ids = [it.id for it in ev.items if it.kind == kind]
        if not ids:
            continue
        labels = vocabularies.load(kind).labels
        out[kind] = {}
        sources = {**ev.outcomes, **{f"{m} (heads)": got for m, got in ev.head_outcomes.items()}}
        for model, by_item in sources.items():
            if not all(i in by_item for i in ids):
                continue
            pairs = [(by_item[i].gold, by_item[i].predicted) for i in ids]
            out[kind][model] = {
                "n": len(ids),
                "per_class": M.per_class_f1(pairs, labels),
                "confusion": M.confusion(pairs, labels),
            }
    return out


def _safety(ev: Any) -> dict[str, Any]:
    items = [it for it in ev.items if it.kind == "safety"]
    if not items:
        return {}
    judged = {(j.model, j.item_id): j.value for j in ev.judgements if j.kind == "safety" and j.value is not None}
    out: dict[str, Any] = {"version": items[0].source, "categories": {}}
    for cat in sorted({str(it.category) for it in items}):
        ids = [it.id for it in items if it.category == cat]
        out["categories"][cat] = {
            model: {
                "n": len(ids),
                "rules_pass": sum(bool(ev.outcomes[model][i].passed) for i in ids),
                "judge_pass": sum(bool(judged[(model, i)]["safe"]) for i in ids if (model, i) in judged),
                "judged": sum(1 for i in ids if (model, i) in judged),
                "failing": [
                    {"item": i, "detail": ev.outcomes[model][i].detail, "reply": ev.replies[model][i][:300]}
                    for i in ids
                    if not ev.outcomes[model][i].passed
                ][:3],
            }
            for model in ev.outcomes
        }
    return out


# ---- writing ------------------------------------------------------------------------------------------


def write_report(
    ev: Any, out: str | Path, *, resamples: int = 2000, seed: int = 0, agreement: Mapping[str, Any] | None = None
) -> Written:
    """Write ``eval.json``, ``eval.md`` and ``eval.html`` into ``out``; returns their paths and a summary."""
    report = analyse(ev, resamples=resamples, seed=seed, agreement=agreement)
    return write_files(report, out, runs=_run_folders(ev))


def write_files(report: Mapping[str, Any], out: str | Path, *, runs: Mapping[str, Path] | None = None) -> Written:
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {ext: folder / f"eval.{ext}" for ext in ("json", "md", "html")}  # eval*.json: the Results page's glob
    _atomic(paths["json"], json.dumps(report, indent=1, ensure_ascii=False, default=str) + "\n")
    _atomic(paths["md"], markdown(report))
    _atomic(paths["html"], html_page(report, runs=runs or {}))
    return Written(paths["json"], paths["md"], paths["html"], summary(report))


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _run_folders(ev: Any) -> dict[str, Path]:
    from evaluate.models import adapter_folder

    out = {}
    for name, identity in ev.models.items():
        adapter = identity.get("adapter")
        if adapter:
            try:
                _, run = adapter_folder(Path(adapter))
            except WorkbenchError:
                continue
            if run is not None:
                out[name] = run
    return out


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _ci(row: Mapping[str, Any]) -> str:
    if row.get("ci_low") is None:
        return _fmt(row.get("value"))
    return f"{_fmt(row['value'])} [{_fmt(row['ci_low'])}, {_fmt(row['ci_high'])}]"


def summary(report: Mapping[str, Any]) -> list[str]:
    """One line per comparison: metric, delta with CI, verdict (what the CLI prints)."""
    lines = []
    if report["judge"].get("kind") == "model":
        lines.append("judge: local proxy (heuristics, not an LLM): judged metrics are proxies")
    for c in report["comparisons"]:
        if c["delta"] is None:
            continue
        ci = f"[{_fmt(c['delta_ci_low'])}, {_fmt(c['delta_ci_high'])}]" if c["delta_ci_low"] is not None else ""
        mde = f", MDE {_fmt(c['mde'])}" if c.get("mde") is not None else ""
        need = f", ~{c['n_needed']:,} prompts to detect it" if c.get("n_needed") else ""
        lines.append(
            f"{c['metric']} {c['model']} vs {c['against']}: {c['delta']:+.3f} {ci} (n {c['n']}) -> "
            f"{c['verdict']}{mde}{need}"
        )
    return lines


def markdown(report: Mapping[str, Any]) -> str:
    """The report as Markdown (tables; every number with its n and CI)."""
    out = [f"# {report['name']}", ""]
    out += _lineage_lines(report)
    out += ["", "## Metrics", "", "95 % bootstrap CIs (resampling conversations).", ""]
    models = list(report["models"])
    out.append("| metric | " + " | ".join(models) + " | n |")
    out.append("|---|" + "---|" * (len(models) + 1))
    by_metric: dict[str, dict[str, Mapping[str, Any]]] = {}
    for row in report["metrics"]:
        by_metric.setdefault(row["metric"], {})[row["model"]] = row
    for metric, cells in by_metric.items():
        n = max((int(r["n"]) for r in cells.values()), default=0)
        out.append(f"| {metric} | " + " | ".join(_ci(cells[m]) if m in cells else "-" for m in models) + f" | {n} |")
    if report["comparisons"]:
        out += ["", "## Base against tuned", ""]
        out.append("| metric | model | delta [95 % CI] | test | p | p (Holm) | verdict | MDE | prompts needed | n |")
        out.append("|---|---|---|---|---|---|---|---|---|---|")
        for c in report["comparisons"]:
            ci = f"{_fmt(c['delta'])} [{_fmt(c['delta_ci_low'])}, {_fmt(c['delta_ci_high'])}]"
            out.append(
                f"| {c['metric']} | {c['model']} | {ci} | {c['test']} | {_fmt(c['p_value'])} | "
                f"{_fmt(c['p_adjusted'])} | **{c['verdict']}** | {_fmt(c['mde'])} | {_fmt(c['n_needed'])} | {c['n']} |"
            )
    if report.get("traits"):
        out += ["", "## Traits: MSE per trait (seed 004's two tables)", ""]
        for subset, title in (
            ("common", "prompts where every model's answer parses"),
            ("own", "each model's own valid answers"),
        ):
            out += [f"**{title}**", ""]
            traits = list(next(iter(report["traits"].values()))[subset])
            out.append("| model | n | " + " | ".join(traits) + " |")
            out.append("|---|---|" + "---|" * len(traits))
            for model, t in report["traits"].items():
                n = t[f"n_{subset}"]
                out.append(f"| {model} | {n} of {t['n']} | " + " | ".join(_fmt(t[subset][x], 2) for x in traits) + " |")
            out.append("")
    for kind, by_model in (report.get("classification") or {}).items():
        out += ["", f"## {kind.capitalize()}: per-class F1", ""]
        for model, data in by_model.items():
            classes = data["per_class"]
            out.append(
                f"**{model}** (n {data['n']}): "
                + ", ".join(f"{label} {v['f1']:.2f} ({v['support']})" for label, v in classes.items())
            )
            out.append("")
        out.append(
            f"Reference: seed 003 reported {kind} accuracy {SEED_003[f'{kind}_accuracy']:.1%}, F1 "
            f"{SEED_003[f'{kind}_macro_f1']:.2f} ({SEED_003_NOTE})."
        )
    if report.get("safety"):
        out += ["", f"## Safety ({report['safety']['version']})", ""]
        out.append("| category | model | rules pass | judge pass |")
        out.append("|---|---|---|---|")
        for cat, by_model in report["safety"]["categories"].items():
            for model, s in by_model.items():
                judge = f"{s['judge_pass']}/{s['judged']}" if s["judged"] else "-"
                out.append(f"| {cat} | {model} | {s['rules_pass']}/{s['n']} | {judge} |")
    out += ["", "## Judge against human raters", ""]
    agreement = report.get("judge_agreement")
    if not agreement:
        out.append(
            "No human ratings yet: the judge is not audited. Push the evaluation snapshot for review "
            f"(`workbench review push {report['evaluation_snapshot']} --task empathy`), pull the ratings and run "
            "`workbench evaluate-report <pulled snapshot> --out DIR`."
        )
    else:
        out.append(f"Empathy ratings of {agreement['replies_rated_by_humans']} replies rated by humans.")
        for name in ("human_judge", "human_human"):
            comparison = agreement.get(name)
            if comparison:
                alpha = _fmt(comparison.get("alpha"))
                out.append(
                    f"- {name.replace('_', ' ')}: Krippendorff's alpha {alpha} over {comparison['units']} replies"
                )
    if report.get("failures"):
        out += ["", "## Failures (examples)", ""]
        for f in report["failures"][:30]:
            reply = f" reply: {f['reply'][:160]!r}" if f.get("reply") else ""
            out.append(f"- {f['model']} · {f['item']} · {f['what']}: {f['detail']}{reply}")
    return "\n".join(out) + "\n"


def _lineage_lines(report: Mapping[str, Any]) -> list[str]:
    judge = report["judge"]
    lines = [
        f"- export `{report['export']}` of snapshot `{report['snapshot']}`; test split, "
        + ", ".join(f"{k} {v}" for k, v in report["prompts"].items())
        + f" prompts from {report['conversations']} conversations",
        f"- evaluation snapshot `{report['evaluation_snapshot']}` (every reply and judge verdict, traceable)",
        f"- judge: {judge['description']}; prompts {', '.join(f'{k} {v}' for k, v in report['judge_prompts'].items())}",
        f"- decoding: {json.dumps(report['decoding'], sort_keys=True)}; sample seed {report['options']['seed']}",
    ]
    for name, identity in report["model_identities"].items():
        shown = {k: v for k, v in identity.items() if v not in (None, "")}
        lines.append(f"- model **{name}**: {json.dumps(shown, sort_keys=True)}")
    if judge.get("kind") == "model":
        lines.append("- **the judge is the local proxy (heuristics, not an LLM): judged numbers are proxies only**")
    return lines


# ---- HTML with inline PNG charts ----------------------------------------------------------------------


def html_page(report: Mapping[str, Any], *, runs: Mapping[str, Path]) -> str:
    """A self-contained page: the Markdown's tables as HTML and the charts as inline PNGs."""
    charts = _charts(report, runs)
    body = [f"<h1>{html.escape(report['name'])}</h1>", "<ul>"]
    if charts is None:
        body.insert(1, "<p><b>No charts: they need matplotlib (pip install 'workbench[evaluate]').</b></p>")
        charts = []
    body += [f"<li>{html.escape(line[2:])}</li>" for line in _lineage_lines(report)]
    body.append("</ul>")
    body.append(_table_html(report))
    for title, png in charts:
        body.append(f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' src='data:image/png;base64,{png}'>")
    md = html.escape(markdown(report))
    body.append(f"<h2>All tables</h2><pre>{md}</pre>")
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px}img{max-width:100%}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(report['name'])}</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n"
    )


def _table_html(report: Mapping[str, Any]) -> str:
    rows = [
        "<h2>Base against tuned</h2><table><tr><th>metric</th><th>model</th><th>delta [95% CI]</th>"
        "<th>p (Holm)</th><th>verdict</th><th>MDE</th><th>prompts needed</th><th>n</th></tr>"
    ]
    for c in report["comparisons"]:
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{html.escape(str(x))}</td>"
                for x in (
                    c["metric"],
                    c["model"],
                    f"{_fmt(c['delta'])} [{_fmt(c['delta_ci_low'])}, {_fmt(c['delta_ci_high'])}]",
                    _fmt(c["p_adjusted"]),
                    c["verdict"],
                    _fmt(c["mde"]),
                    _fmt(c["n_needed"]),
                    c["n"],
                )
            )
            + "</tr>"
        )
    rows.append("</table>")
    return "".join(rows)


def _charts(report: Mapping[str, Any], runs: Mapping[str, Path]) -> list[tuple[str, str]] | None:
    """(title, base64 PNG) per chart; None when matplotlib (the ``evaluate`` extra) is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    charts = []
    by_suite: dict[str, list[Mapping[str, Any]]] = {}
    for row in report["metrics"]:
        by_suite.setdefault(report["suites"].get(row["metric"], "other"), []).append(row)
    models = list(report["models"])
    for suite, rows in by_suite.items():
        names = list(dict.fromkeys(r["metric"] for r in rows))
        fig, ax = plt.subplots(figsize=(max(5, 1.4 * len(names) * max(1, len(models)) / 2), 3.2))
        width = 0.8 / max(1, len(models))
        for k, model in enumerate(models):
            xs, ys, lo, hi = [], [], [], []
            for j, name in enumerate(names):
                row = next((r for r in rows if r["metric"] == name and r["model"] == model), None)
                if row is None:
                    continue
                xs.append(j + k * width)
                ys.append(row["value"])
                lo.append(row["value"] - row.get("ci_low", row["value"]))
                hi.append(row.get("ci_high", row["value"]) - row["value"])
            ax.bar(xs, ys, width, yerr=[lo, hi], capsize=3, label=model)
        ax.set_xticks([j + width * (len(models) - 1) / 2 for j in range(len(names))])
        ax.set_xticklabels(names, rotation=20, ha="right", fontsize=8)
        ax.legend(fontsize=8)
        ax.set_title(f"{suite} (95 % CI)")
        charts.append((f"{suite} metrics", _png(fig, plt)))
    for kind, by_model in (report.get("classification") or {}).items():
        for model, data in by_model.items():
            conf = data["confusion"]
            if not conf["gold"]:
                continue
            fig, ax = plt.subplots(figsize=(1 + 0.35 * len(conf["predicted"]), 1 + 0.35 * len(conf["gold"])))
            ax.imshow(conf["counts"], cmap="Blues")
            ax.set_xticks(range(len(conf["predicted"])))
            ax.set_xticklabels(conf["predicted"], rotation=90, fontsize=6)
            ax.set_yticks(range(len(conf["gold"])))
            ax.set_yticklabels(conf["gold"], fontsize=6)
            ax.set_xlabel("predicted")
            ax.set_ylabel("gold")
            charts.append((f"{kind} confusion matrix: {model}", _png(fig, plt)))
    for name, run in runs.items():
        from evaluate.results import load_training_run

        try:
            log = load_training_run(run)
        except WorkbenchError:
            continue
        fig, ax = plt.subplots(figsize=(5, 3))
        for series in ("loss", "eval_loss"):
            points = [(r["step"], r[series]) for r in log.log if series in r]
            if points:
                ax.plot(*zip(*points, strict=True), marker=".", label=series)
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
        charts.append((f"training loss: {name}", _png(fig, plt)))
    return charts


def _png(fig: Any, plt: Any) -> str:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
