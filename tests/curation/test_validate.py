"""Validation suites on real example slices: a clean snapshot validates; each check catches its violation."""

from __future__ import annotations

import copy
import json
import shutil

import pyarrow.parquet as pq
import pytest

from curation.curate import curate, load_steps
from curation.ingest import ingest
from curation.record import RECORD_SCHEMA, to_table
from curation.store import SnapshotStore
from curation.validate import SuiteConfig, ValidationFailed, load_config, validate

ROOT_CONFIG = "examples/curate.toml"


@pytest.fixture(scope="module")
def clean_store(tmp_path_factory):
    """Three example sources (dialogue acts, GoEmotions, ESConv with empathy scores), curated."""
    from tests.conftest import EXAMPLES, ROOT

    store = SnapshotStore(str(tmp_path_factory.mktemp("validate") / "store"))
    ingest("dailydialog", [EXAMPLES / "dailydialog" / "ijcnlp_dailydialog"], store=store, tag="dd-raw")
    ingest("goemotions", [EXAMPLES / "goemotions"], store=store, tag="ge-raw")
    ingest("esconv", [EXAMPLES / "esconv" / "hf"], store=store, tag="esconv-raw")
    curate(["dd-raw", "ge-raw", "esconv-raw"], store=store, steps=load_steps(ROOT / ROOT_CONFIG), tag="clean")
    return store


@pytest.fixture
def store(clean_store, tmp_path):
    """A private copy per test, so refs and new snapshots do not leak between tests."""
    dest = tmp_path / "store"
    shutil.copytree(clean_store.url, dest)
    return SnapshotStore(str(dest))


def _records(store):
    return list(store.iter_records("clean"))


def _write(store, records, tag="bad"):
    with store.writer(step={"kind": "test.violate", "config": {"tag": tag}}, parents=[store.resolve("clean")]) as w:
        w.add_many(records)
        sid = w.commit()
    store.set_ref(tag, sid)
    return tag


def _tamper(store, ref, fn):
    """Rewrite a snapshot's Parquet shard in place (what a writer refuses to produce: repeated ids, bad schema)."""
    (path,) = store.shard_paths(ref)
    with store.fs.open(path, "rb") as f:
        table = pq.read_table(f)
    with store.fs.open(path, "wb") as f:
        pq.write_table(fn(table), f)
    _reseal(store, store.resolve(ref), path)


def _reseal(store, sid, path):
    """Record the tampered shard's size, checksum and rows in the manifest, as a forger would: the
    store's own checks then pass, and only the suites (and ``verify``'s recomputed id) can object."""
    from curation.integrity import file_sha256, seal_of

    manifest_path = f"{store.snapshot_path(sid)}/manifest.json"
    with store.fs.open(manifest_path, "rb") as f:
        m = json.loads(f.read())
    shard = m["shards"][0]
    shard["bytes"], shard["sha256"] = file_sha256(store.fs, path)
    with store.fs.open(path, "rb") as f:
        shard["rows"] = m["rows"] = pq.ParquetFile(f).metadata.num_rows
    m["seal"] = seal_of(m)
    with store.fs.open(manifest_path, "wb") as f:
        f.write(json.dumps(m).encode())


def _failed_checks(result):
    return {o.check for o in result.failed}


def _assert_fails(store, ref, check, config=None):
    before = set(store.snapshot_ids())
    result = validate(ref, store=store, config=config)
    assert not result.success
    assert check in _failed_checks(result), [(o.check, o.observed) for o in result.failed]
    assert set(store.snapshot_ids()) == before  # nothing validated was written
    assert result.snapshot_id is None
    failing = next(o for o in result.failed if o.check == check)
    return failing


def _first(records, pred):
    return next(i for i, r in enumerate(records) if pred(r))


# ------------------------------------------------------------------ success


def test_clean_snapshot_validates_into_a_new_validated_snapshot(store, tmp_path):
    report = tmp_path / "report.html"
    result = validate("clean", store=store, report_path=report, tag="validated")
    assert result.success, [(o.check, o.observed, o.examples) for o in result.failed]
    assert result.snapshot_id and result.snapshot_id != result.input_id
    m = store.manifest("validated")
    assert m["status"] == "validated"
    assert m["parents"] == [store.resolve("clean")]
    assert m["rows"] == store.manifest("clean")["rows"]
    v = m["validation"]
    assert v["success"] and v["statistics"]["unsuccessful"] == 0
    assert {r["check"] for r in v["results"]} >= {"ids_unique", "no_text_leak", "scores_in_scale", "schema"}
    assert store.manifest("clean")["status"] == "draft"  # the input is untouched
    page = report.read_text()
    assert "expect_column_values_to_be_unique" in page and "validated" in page


def test_downstream_gate_refuses_a_draft_unless_allowed(store):
    from curation.validate import UnvalidatedSnapshotError, require_validated

    with pytest.raises(UnvalidatedSnapshotError, match=r"status is 'draft'.*--allow-unvalidated"):
        require_validated(store, "clean", verb="export")
    assert require_validated(store, "clean", allow_unvalidated=True)["status"] == "draft"
    assert validate("clean", store=store, tag="ok").success
    assert require_validated(store, "ok")["status"] == "validated"


def test_raw_kind_skips_leak_and_empty_text(store):
    result = validate("dd-raw", store=store, config=SuiteConfig(kind="raw"))
    checks = {o.check for o in result.outcomes}
    assert "no_text_leak" not in checks and "text_not_empty" not in checks
    assert result.success


# ------------------------------------------------------------------ one violation per check


def test_schema_missing_column(store):
    ref = _write(store, _records(store))
    _tamper(store, ref, lambda t: t.drop_columns(["context"]))
    failing = _assert_fails(store, ref, "schema")
    assert any("field=context" in e for e in failing.examples)


def test_ids_unique(store):
    ref = _write(store, _records(store))
    _tamper(store, ref, lambda t: __import__("pyarrow").concat_tables([t, t.slice(0, 1)]))
    failing = _assert_fails(store, ref, "ids_unique")
    assert failing.examples


def test_ids_well_formed(store):
    recs = _records(store)
    recs[0]["id"] = "no-colons-here"
    failing = _assert_fails(store, _write(store, recs), "ids_well_formed")
    assert any("no-colons-here" in e for e in failing.examples)


def test_text_not_empty(store):
    recs = _records(store)
    recs[3]["turns"][0]["text"] = "   "
    failing = _assert_fails(store, _write(store, recs), "text_not_empty")
    assert any(recs[3]["id"] in e for e in failing.examples)


def test_labels_in_vocabulary(store):
    recs = _records(store)
    i = _first(recs, lambda r: any(lab["task"] == "emotion" for lab in r["labels"]))
    lab = next(lab for lab in recs[i]["labels"] if lab["task"] == "emotion")
    lab["value"] = "not_an_emotion"
    failing = _assert_fails(store, _write(store, recs), "labels_in_vocabulary")
    assert any(recs[i]["id"] in e for e in failing.examples)


def test_scores_in_scale_empathy(store):
    recs = _records(store)
    i = _first(recs, lambda r: any(lab["task"] == "empathy" for lab in r["labels"]))
    next(lab for lab in recs[i]["labels"] if lab["task"] == "empathy")["score"] = 9.0
    failing = _assert_fails(store, _write(store, recs), "scores_in_scale")
    assert any(recs[i]["id"] in e for e in failing.examples)


def test_scores_in_scale_traits(store):
    recs = _records(store)
    lab = copy.deepcopy(recs[0]["labels"][0]) if recs[0]["labels"] else None
    assert lab is not None
    lab.update(task="trait.openness", value="11", score=11.0, source="llm", agent="test")
    recs[0]["labels"].append(lab)
    _assert_fails(store, _write(store, recs), "scores_in_scale")


def test_splits_known(store):
    recs = _records(store)
    recs[1]["split"] = "dev"
    failing = _assert_fails(store, _write(store, recs), "splits_known")
    assert any("dev" in e for e in failing.examples)


def test_no_id_leak(store):
    ref = _write(store, _records(store))

    def leak(t):
        import pyarrow as pa

        row = t.slice(0, 1)
        other = "test" if row.column("split")[0].as_py() != "test" else "train"
        row = row.set_column(row.schema.get_field_index("split"), "split", pa.array([other]))
        return pa.concat_tables([t, row.cast(t.schema)])

    _tamper(store, ref, leak)
    failing = _assert_fails(store, ref, "no_id_leak")
    assert failing.examples


def test_no_text_leak(store):
    recs = _records(store)
    a = _first(recs, lambda r: r["split"] == "train")
    b = _first(recs, lambda r: r["split"] == "test")
    recs[b]["turns"] = copy.deepcopy(recs[a]["turns"])
    recs[b]["turns"][0]["text"] = "  " + recs[b]["turns"][0]["text"].upper() + " "  # normalisation still matches
    failing = _assert_fails(store, _write(store, recs), "no_text_leak")
    assert {recs[a]["id"], recs[b]["id"]} & {e.split("id=")[-1] for e in failing.examples}


def test_synthetic_only_in_train(store):
    recs = _records(store)
    i = _first(recs, lambda r: r["split"] == "test")
    recs[i]["provenance"]["synthetic"] = True
    failing = _assert_fails(store, _write(store, recs), "synthetic_train_only")
    assert any(recs[i]["id"] in e for e in failing.examples)


def test_label_distribution_bounds(store):
    config = SuiteConfig(label_bounds={"emotion": {"neutral": (0.0, 0.05)}, "act": {"*": (0.0, 1.0)}})
    failing = _assert_fails(store, "clean", "label_distribution", config=config)
    assert any("neutral" in e for e in failing.examples)
    # an absent bounded label counts as share 0
    config = SuiteConfig(label_bounds={"emotion": {"no_such_label": (0.01, 1.0)}})
    _assert_fails(store, "clean", "label_distribution", config=config)


def test_source_row_counts(store):
    config = SuiteConfig(source_rows={"dailydialog": (1, 5), "goemotions": (1, None)})
    failing = _assert_fails(store, "clean", "source_rows", config=config)
    assert failing.examples == ("source=dailydialog",) or any("dailydialog" in e for e in failing.examples)
    _assert_fails(store, "clean", "source_rows", config=SuiteConfig(source_rows={"openwebtext": (1, None)}))


# ------------------------------------------------------------------ configuration and hooks


def test_user_expectations_extra_and_hook(store):
    import great_expectations.expectations as gxe

    extra = (("records", gxe.ExpectColumnValuesToBeInSet(column="source", value_set=["dailydialog"])),)
    failing = _assert_fails(store, "clean", "user", config=SuiteConfig(extra=extra))
    assert failing.expectation == "expect_column_values_to_be_in_set"

    def hook(frames):
        n = len(frames.records)
        yield "records", gxe.ExpectTableRowCountToBeBetween(min_value=n + 1)

    _assert_fails(store, "clean", "user", config=SuiteConfig(hooks=(hook,)))


def test_config_from_toml_and_bad_options(tmp_path, store):
    path = tmp_path / "suite.toml"
    path.write_text(
        '[validation]\nkind = "curated"\nskip = ["no_text_leak"]\n'
        "[validation.source_rows]\ndailydialog = [1, 100000]\n"
        '[validation.label_bounds.emotion]\n"*" = [0.0, 0.9]\n'
    )
    config = load_config(path)
    assert "no_text_leak" not in config.enabled and config.source_rows["dailydialog"] == (1, 100000)
    assert validate("clean", store=store, config=config).success
    path.write_text("nonsense = 1\n")
    with pytest.raises(Exception, match="unknown validation option 'nonsense'"):
        load_config(path)
    with pytest.raises(Exception, match="unknown validation check"):
        SuiteConfig(skip=("nope",))


def test_cli_prints_table_and_fails_with_one_line(store, tmp_path, monkeypatch):
    import typer
    from typer.testing import CliRunner

    from ui import state
    from ui.commands.validate import validate as validate_cmd

    monkeypatch.setattr(state, "STORE_URL", store.url)
    app = typer.Typer()
    app.command()(validate_cmd)
    app.command("noop")(lambda: None)
    recs = _records(store)
    recs[0]["split"] = "dev"
    _write(store, recs)
    result = CliRunner().invoke(app, ["validate", "bad", "--report", str(tmp_path / "r.html")])
    assert isinstance(result.exception, ValidationFailed)
    assert "expectations failed (splits_known)" in str(result.exception)
    assert "splits_known" in result.output and (tmp_path / "r.html").exists()
    ok = CliRunner().invoke(app, ["validate", "clean", "--tag", "v"])
    assert ok.exit_code == 0, ok.output
    assert store.manifest("v")["status"] == "validated"


def test_schema_of_records_is_the_canonical_one():
    assert to_table([]).schema.equals(RECORD_SCHEMA)
