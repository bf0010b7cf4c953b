"""Reading manifests: label tables and differences between snapshots (no I/O here)."""

from __future__ import annotations

from collections import Counter
from typing import Any

SPLITS = ("train", "validation", "test")


def label_table(manifest: dict[str, Any], *, top: int = 12) -> dict[str, list[dict[str, Any]]]:
    """Per task, rows of (label source, value, count per split, total, share), most frequent first.

    At most ``top`` values per task and label source; the rest are summed into ``(other N)``.
    """
    out: dict[str, list[dict[str, Any]]] = {}
    for task, by_source in manifest["label_distribution"].items():
        rows: list[dict[str, Any]] = []
        for src, by_split in by_source.items():
            totals: Counter[str] = Counter()
            for counts in by_split.values():
                totals.update(counts)
            grand = sum(totals.values()) or 1
            ranked = totals.most_common()
            shown, rest = ranked[:top], ranked[top:]
            for value, total in shown:
                row = {"source": src, "value": value, "total": total, "share": total / grand}
                row.update({s: by_split.get(s, {}).get(value, 0) for s in SPLITS})
                rows.append(row)
            if rest:
                row = {"source": src, "value": f"(other {len(rest)})", "total": sum(n for _, n in rest)}
                row["share"] = row["total"] / grand
                row.update({s: sum(by_split.get(s, {}).get(v, 0) for v, _ in rest) for s in SPLITS})
                rows.append(row)
        out[task] = rows
    return out


def diff_manifests(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Row counts per source/split and label counts per task/source/value, A against B."""
    rows = []
    keys = sorted(set(_flat_counts(a)) | set(_flat_counts(b)))
    fa, fb = _flat_counts(a), _flat_counts(b)
    rows += [{"what": "records", "key": k, "a": fa.get(k, 0), "b": fb.get(k, 0)} for k in keys]
    la, lb = _flat_labels(a), _flat_labels(b)
    for k in sorted(set(la) | set(lb)):
        if la.get(k, 0) != lb.get(k, 0):
            rows.append({"what": "labels", "key": k, "a": la.get(k, 0), "b": lb.get(k, 0)})
    return {"a": a["id"], "b": b["id"], "rows": rows}


def _flat_counts(m: dict[str, Any]) -> dict[str, int]:
    return {f"{src}/{split}": n for src, by in m["counts"].items() for split, n in by.items()}


def _flat_labels(m: dict[str, Any]) -> dict[str, int]:
    out: Counter[str] = Counter()
    for task, by_source in m["label_distribution"].items():
        for src, by_split in by_source.items():
            for counts in by_split.values():
                for value, n in counts.items():
                    out[f"{task}/{src}/{value}"] += n
    return dict(out)
