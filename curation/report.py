"""The report of a curated snapshot: steps, drops with examples, clusters, other tables, label balance.

Built from the manifest, the dropped rows and the artifacts stored beside the
snapshot; returns plain data (the CLI prints it, the dashboard will show it).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from curation.balance import compare
from curation.store import SnapshotStore

SNIPPET = 160


def build_report(store: SnapshotStore, ref: str, *, examples: int = 3) -> dict[str, Any]:
    sid = store.resolve(ref)
    m = store.manifest(sid)
    rep: dict[str, Any] = {
        "id": sid,
        "parents": m["parents"],
        "rows": m["rows"],
        "counts": m["counts"],
        "steps": [{"name": st["kind"].removeprefix("curate."), **st} for st in m["steps"]],
        "drops": _drops(store, sid, examples),
        "clusters": [],
        "tables": [],
    }
    for name, info in (m.get("artifacts") or {}).items():
        if name.endswith(".clusters"):
            rep["clusters"].append(_clusters(store, sid, name, examples))
        else:
            rep["tables"].append(
                {"name": name, "rows": info["rows"], "data": store.read_artifact(sid, name).to_pylist()}
            )
    parents = [store.manifest(p) for p in m["parents"]]
    rep["balance"] = [
        {
            "task": (b or a).task,
            "label_source": (b or a).label_source,
            "source": (b or a).source,
            "split": (b or a).split,
            "before": _row(b),
            "after": _row(a),
        }
        for b, a in compare(parents, m)
    ]
    return rep


def _row(r: Any) -> dict[str, Any] | None:
    if r is None:
        return None
    d = asdict(r)
    d["imbalance"] = r.imbalance
    return d


def _snippet(turns: list[dict[str, Any]]) -> str:
    text = " | ".join(t["text"] for t in turns)
    text = " ".join(text.split())
    return text if len(text) <= SNIPPET else text[: SNIPPET - 1] + "…"


def _drops(store: SnapshotStore, sid: str, examples: int) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for batch in store.iter_dropped(sid, columns=["id", "split", "turns", "step", "reason", "detail"]):
        for row in batch.to_pylist():
            g = groups.setdefault(
                (row["step"], row["reason"]), {"step": row["step"], "reason": row["reason"], "count": 0, "examples": []}
            )
            g["count"] += 1
            if len(g["examples"]) < examples:
                g["examples"].append(
                    {"id": row["id"], "split": row["split"], "detail": row["detail"], "text": _snippet(row["turns"])}
                )
    return sorted(groups.values(), key=lambda g: (g["step"], -g["count"]))


def _clusters(store: SnapshotStore, sid: str, name: str, largest: int) -> dict[str, Any]:
    table = store.read_artifact(sid, name)
    out: dict[str, Any] = {"name": name, "clusters": 0, "members": table.num_rows, "largest": []}
    if table.num_rows == 0 or "cluster_id" not in table.column_names:
        return out
    rows = table.to_pylist()
    by_cluster: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_cluster[r["cluster_id"]].append(r)
    out["clusters"] = len(by_cluster)
    top = sorted(by_cluster.items(), key=lambda kv: (-len(kv[1]), str(kv[0])))[:largest]
    wanted = {r["id"] for _, members in top for r in members}
    texts = _texts(store, sid, wanted)
    for cluster, members in top:
        out["largest"].append(
            {
                "cluster": cluster,
                "members": [
                    {
                        "id": r["id"],
                        "split": r.get("split"),
                        "kept": bool(r.get("kept")),
                        "similarity": r.get("similarity"),
                        "text": texts.get(r["id"], ""),
                    }
                    for r in sorted(members, key=lambda r: (not r.get("kept"), r["id"]))
                ],
            }
        )
    return out


def _texts(store: SnapshotStore, sid: str, ids: set[str]) -> dict[str, str]:
    """Snippets of the given records, from the snapshot and its dropped rows (streamed, filtered)."""
    if not ids:
        return {}
    wanted = pa.array(sorted(ids))
    out: dict[str, str] = {}
    for source in (store.iter_batches(sid, columns=["id", "turns"]), store.iter_dropped(sid, columns=["id", "turns"])):
        for batch in source:
            mask = pc.is_in(batch.column("id"), value_set=wanted)
            for row in batch.filter(mask).to_pylist():
                out[row["id"]] = _snippet(row["turns"])
    return out
