"""The CLI as a user runs it: real processes, real example files, a store in tmp."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The names the README's walk-through gives the user's own snapshots and exports: the example run moves none of them.
USER_REFS = {"dd-raw", "ed-raw", "esconv-raw", "ge-raw", "owt-raw", "clean", "labeled", "validated", "augmented", "e1"}


def wb(*args: str, store: Path, check: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "WORKBENCH_STORE": str(store), "COLUMNS": "200", "NO_COLOR": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "ui.cli", *args], capture_output=True, text=True, env=env, cwd=cwd or ROOT
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"workbench {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def _store_is_empty(store: Path) -> bool:
    snaps = store / "snapshots"
    refs = store / "refs"
    tmp = store / "tmp"
    return (
        (not snaps.exists() or not any(snaps.iterdir()))
        and (not refs.exists() or not any(refs.iterdir()))
        and (not tmp.exists() or not any(tmp.iterdir()))
    )


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """`workbench run` once on the bundled examples."""
    store = tmp_path_factory.mktemp("run") / "store"
    proc = wb("run", store=store)
    return store, proc


def test_run_ingests_all_five_example_sources(ran):
    store, proc = ran
    for source in ("dailydialog", "empatheticdialogues", "esconv", "goemotions", "openwebtext"):
        assert source in proc.stdout
    listed = json.loads(wb("snapshots", "list", "--json", store=store).stdout)
    refs = {r for info in listed for r in info["refs"]}
    assert {"example-dd-raw", "example-ed-raw", "example-esconv-raw", "example-ge-raw", "example-owt-raw"} <= refs
    assert "latest" in refs and not refs & USER_REFS  # the example run keeps off the names of the user's data
    assert all(info["rows"] > 0 for info in listed)


def test_the_example_pipeline_writes_only_example_refs():
    from ui.pipeline import load_config

    cfg = load_config(None)
    stages = [*cfg.ingest, cfg.curate, cfg.label, cfg.validate, cfg.export, cfg.evaluate]
    written = [stage.tag for stage in stages]
    assert all(tag and tag.startswith("example-") for tag in written), written
    assert not set(written) & USER_REFS
    read = [*cfg.curate.inputs, cfg.label.input, cfg.validate.input, cfg.export.input, cfg.finetune.input]
    assert set(read) <= set(written)  # it reads only what it wrote: nothing of the user's


def test_example_run_leaves_the_users_refs_alone(tmp_path, examples):
    """A store holding the user's own snapshot under every README name, then the example pipeline's ingest and
    curate stages (the bundled config cut down; the later stages write example-* refs too, see above)."""
    import tomllib

    from curation.store import SnapshotStore

    store = tmp_path / "store"
    mine = tmp_path / "goemotions"
    shutil.copytree(examples / "goemotions", mine)
    train = (mine / "train.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    (mine / "train.tsv").write_text("".join(train[:50]), encoding="utf-8")  # not the example's data: its own id
    wb("ingest", "goemotions", str(mine), "--tag", "ge-raw", store=store)
    users = SnapshotStore(str(store))
    own = users.resolve("ge-raw")
    for name in sorted(USER_REFS - {"e1"}):
        users.set_ref(name, own)
    before = users.refs()

    bundled = tomllib.loads((examples.parent / "pipeline.toml").read_text(encoding="utf-8"))
    lines = []
    for stage in bundled["ingest"]:
        paths = [str(examples.parent / p) for p in stage["paths"]]
        lines += ["[[ingest]]", f"source = {json.dumps(stage['source'])}", f"paths = {json.dumps(paths)}"]
        lines.append(f"tag = {json.dumps(stage['tag'])}")
    curate = bundled["curate"]
    lines += ["[curate]", f"inputs = {json.dumps(curate['inputs'])}", f"tag = {json.dumps(curate['tag'])}"]
    lines.append(f"config = {json.dumps(str(examples.parent / curate['config']))}")
    cut = tmp_path / "pipeline.toml"
    cut.write_text("\n".join(lines) + "\n", encoding="utf-8")
    proc = wb("run", "--config", str(cut), store=store)

    after = users.refs()
    assert {name: after[name] for name in before if name != "latest"} == {
        name: sid for name, sid in before.items() if name != "latest"
    }
    assert "moved" not in proc.stdout
    assert {"example-dd-raw", "example-ge-raw", "example-clean"} <= set(after)
    assert after["latest"] == after["example-clean"]  # latest names the newest snapshot, and says it moved
    assert f"latest {own[:12]} -> {after['latest'][:12]}" in proc.stdout


def test_run_twice_reuses_identical_snapshots(ran):
    store, _ = ran
    before = sorted(p.name for p in (store / "snapshots").iterdir())
    proc = wb("run", store=store)
    assert "identical data already stored" in proc.stdout
    assert sorted(p.name for p in (store / "snapshots").iterdir()) == before


def test_show_prints_counts_labels_and_provenance(ran):
    store, _ = ran
    out = wb("snapshots", "show", "example-dd-raw", store=store).stdout
    assert "dailydialog" in out and "labels: emotion" in out and "labels: act" in out
    assert "sha256:" in out and "step ingest" in out
    manifest = json.loads(wb("snapshots", "show", "example-dd-raw", "--json", store=store).stdout)
    counts = manifest["counts"]["dailydialog"]
    assert set(counts) == {"train", "validation", "test"}
    assert manifest["steps"][0]["counters"]["kept"] == sum(counts.values())
    assert manifest["label_distribution"]["act"]["gold"]["train"]


def test_diff_between_two_snapshots(ran):
    store, _ = ran
    out = wb("snapshots", "diff", "example-dd-raw", "example-ge-raw", store=store).stdout
    assert "dailydialog/train" in out and "goemotions/train" in out


def test_missing_path_is_one_line_error_and_writes_nothing(tmp_path):
    store = tmp_path / "store"
    proc = wb("ingest", "dailydialog", str(tmp_path / "nope"), "--tag", "x", store=store, check=False)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "nope" in lines[0] and "does not exist" in lines[0]
    assert "Traceback" not in proc.stderr
    assert _store_is_empty(store)


def test_bad_row_stops_by_default_and_skip_quarantines(tmp_path, examples):
    src = examples / "goemotions"
    bad = tmp_path / "goemotions"
    shutil.copytree(src, bad)
    lines = (bad / "train.tsv").read_text(encoding="utf-8").split("\n")
    text, _, cid = lines[4].split("\t")
    lines[4] = f"{text}\t28\t{cid}"  # label id out of range 0..27
    (bad / "train.tsv").write_text("\n".join(lines), encoding="utf-8")
    store = tmp_path / "store"

    proc = wb("ingest", "goemotions", str(bad), "--tag", "ge", store=store, check=False)
    assert proc.returncode == 1
    assert "train.tsv" in proc.stderr and "line 5" in proc.stderr and "28" in proc.stderr
    assert _store_is_empty(store)

    wb("ingest", "goemotions", str(bad), "--tag", "ge", "--on-error", "skip", store=store)
    manifest = json.loads(wb("snapshots", "show", "ge", "--json", store=store).stdout)
    assert manifest["quarantine"]["rows"] == 1
    assert manifest["steps"][0]["counters"]["rejected"] == 1
    q = wb("snapshots", "show", "ge", "--quarantine", store=store).stdout
    assert "line 5" in q


def test_debug_shows_traceback(tmp_path):
    proc = wb("--debug", "ingest", "goemotions", str(tmp_path / "nope"), store=tmp_path / "s", check=False)
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_unknown_source_and_ref(tmp_path):
    proc = wb("ingest", "reddit", str(tmp_path), store=tmp_path / "s", check=False)
    assert proc.returncode == 1 and "unknown source 'reddit'" in proc.stderr
    proc = wb("snapshots", "show", "nope", store=tmp_path / "s", check=False)
    assert proc.returncode == 1 and "no snapshot or ref named 'nope'" in proc.stderr


def test_usage_error_is_a_usage_line_not_a_traceback(tmp_path):
    proc = wb("snapshots", "list", "--stor", "x", store=tmp_path / "s", check=False)
    assert proc.returncode == 2
    assert "No such option: --stor" in proc.stderr and "Traceback" not in proc.stderr


def test_exit_codes_of_commands_reach_the_shell(tmp_path, monkeypatch):
    """A command that ends with typer.Exit(1) (review status with no server) exits 1."""
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    proc = wb("review", "status", store=tmp_path / "s", check=False)
    assert proc.returncode == 1 and "no local Argilla server" in proc.stdout


def test_run_ends_with_an_export_of_the_validated_snapshot(ran):
    store, proc = ran
    assert "export ref example-e1 ->" in proc.stdout
    [exported] = json.loads(wb("export", "list", "--json", store=store).stdout)
    validated = json.loads((store / "refs" / "example-validated.json").read_text())["id"]
    assert exported["snapshot"] == validated and exported["refs"] == ["example-e1"]
    assert exported["tasks"] == ["response", "emotion", "strategy", "traits"] and exported["rows"] > 1000


def test_run_ends_with_a_tiny_fine_tune_and_a_rerun_trains_nothing(ran):
    store, proc = ran
    run_dir = store.parent / "runs" / "pipeline"
    info = json.loads((run_dir / "run.json").read_text())
    exported = json.loads(wb("export", "list", "--json", store=store).stdout)[0]["id"]
    assert info["status"] == "finished" and info["export"] == exported
    assert (run_dir / "adapter" / "adapter_config.json").is_file()
    assert "only demonstrates the fine-tuning path" in proc.stdout
    steps = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps if "loss" in s] == [1, 2, 3]
    dd_raw = json.loads((store / "refs" / "example-dd-raw.json").read_text())["id"]
    ed_raw = json.loads((store / "refs" / "example-ed-raw.json").read_text())["id"]
    wb("snapshots", "tag", "example-dd-raw", ed_raw, store=store)  # pointed elsewhere; the run moves it back
    again = wb("run", store=store)
    assert f"{run_dir} already holds the finished run on export {exported} (nothing trained)" in again.stdout
    assert f"moved 1 existing ref(s): example-dd-raw {ed_raw[:12]} -> {dd_raw[:12]}" in again.stdout
    assert "latest " not in again.stdout  # a re-run ends where the first run did
    log = json.loads(wb("snapshots", "log", "example-dd-raw", "--json", store=store).stdout)
    assert [(e["old"], e["new"]) for e in log][-2:] == [(dd_raw, ed_raw), (ed_raw, dd_raw)]
    assert "snapshots tag example-dd-raw" in log[-2]["command"] and " run" in log[-1]["command"]
    # every stage comes back from the stage cache: nothing recomputed, the same snapshots and evaluation
    first = json.loads((store / "refs" / "example-eval.json").read_text())["id"]
    assert f"evaluate: unchanged -> {first} (memoised" in again.stdout
    assert "10 stage(s) unchanged since an earlier run, 0 computed" in again.stdout
    # --force recomputes; the evaluation's replies then come back from the completion cache
    forced = wb("run", "--force", store=store)
    assert "unchanged" not in forced.stdout.replace("identical data already stored", "")
    assert "replies: 0 generated, 64 from the cache" in forced.stdout
    assert f"evaluation snapshot {first}" in forced.stdout


def test_a_stage_reruns_when_its_inputs_config_or_upstream_change(tmp_path, examples):
    """The stage cache answers a repeat at once, and recomputes exactly what a change reaches."""
    store = tmp_path / "store"
    curate_toml = tmp_path / "curate.toml"
    curate_toml.write_text('[[step]]\nname = "exact_dedup"\n', encoding="utf-8")
    data = tmp_path / "ge"
    shutil.copytree(examples / "goemotions", data)
    cfg = tmp_path / "pipeline.toml"
    cfg.write_text(
        f'[[ingest]]\nsource = "goemotions"\npaths = ["{data}"]\ntag = "ge"\n'
        f'[curate]\ninputs = ["ge"]\nconfig = "{curate_toml}"\ntag = "clean"\n'
        '[label]\ninput = "clean"\ntasks = ["emotion"]\ntag = "labeled"\n',
        encoding="utf-8",
    )
    first = wb("run", "--config", str(cfg), store=store)
    assert "unchanged" not in first.stdout
    again = wb("run", "--config", str(cfg), store=store)
    for what in ("ingest goemotions", "curate", "label (local)"):
        assert f"{what}: unchanged -> " in again.stdout
    assert "3 stage(s) unchanged since an earlier run, 0 computed" in again.stdout
    # a different curate config: ingest is still answered from the cache, curate and label run again
    curate_toml.write_text('[[step]]\nname = "exact_dedup"\n[[step]]\nname = "min_turns"\nmin_turns = 1\n')
    changed = wb("run", "--config", str(cfg), store=store)
    assert "ingest goemotions: unchanged" in changed.stdout
    assert "curate: unchanged" not in changed.stdout and "label (local): unchanged" not in changed.stdout
    assert "1 stage(s) unchanged since an earlier run, 2 computed" in changed.stdout
    # changed input data: everything downstream recomputes
    tsv = data / "train.tsv"
    tsv.write_text("".join(tsv.read_text(encoding="utf-8").splitlines(keepends=True)[:-1]), encoding="utf-8")
    edited = wb("run", "--config", str(cfg), store=store)
    assert "unchanged" not in edited.stdout.replace("identical data already stored", "")


def test_run_ends_with_an_evaluation_of_base_against_the_adapter(ran):
    store, proc = ran
    report = json.loads((store.parent / "runs" / "evaluation" / "eval.json").read_text())
    assert list(report["models"]) == ["base", "pipeline"]
    assert report["prompts"] == {"empathy": 8, "classification": 8, "traits": 8, "safety": 8}
    assert report["judge"]["kind"] == "model" and "judge: local proxy" in proc.stdout
    assert report["evaluation_snapshot"] == json.loads((store / "refs" / "example-eval.json").read_text())["id"]
    assert {c["verdict"] for c in report["comparisons"]} <= {"improved", "worse", "no detectable change"}
    assert "empathy_rating pipeline vs base:" in proc.stdout
    assert (store.parent / "runs" / "evaluation" / "eval.html").read_text().count("data:image/png") >= 2
    shown = wb("snapshots", "show", "example-eval", store=store).stdout
    assert "evaluation" in shown


def test_bad_evaluate_stage_names_the_key(tmp_path):
    cfg = tmp_path / "p.toml"
    cfg.write_text('[evaluate]\ninput = "e1"\ntiny = true\nlimit = 0\n')
    proc = wb("run", "--config", str(cfg), store=tmp_path / "s", check=False)
    assert proc.returncode == 1 and "[evaluate]: 'limit' must be a positive integer" in proc.stderr


def test_bad_finetune_stage_names_the_key(tmp_path):
    cfg = tmp_path / "p.toml"
    cfg.write_text('[finetune]\ninput = "e1"\ntiny = true\nbase_model = "x"\n')
    proc = wb("run", "--config", str(cfg), store=tmp_path / "s", check=False)
    assert proc.returncode == 1 and "[finetune]: give either 'base_model' or tiny = true" in proc.stderr


def test_bad_export_stage_names_the_key(tmp_path):
    cfg = tmp_path / "p.toml"
    cfg.write_text('[export]\ninput = "validated"\nmix = "temperature:x"\n')
    proc = wb("run", "--config", str(cfg), store=tmp_path / "s", check=False)
    assert proc.returncode == 1 and "[export]: 'mix'" in proc.stderr and "p.toml" in proc.stderr


def test_a_missing_optional_dependency_names_the_extra(ran):
    """As in a base install (`pip install .`): transformers is absent, the preview says which extra."""
    store, _ = ran
    code = (
        "import sys\n"
        "sys.modules['transformers'] = None  # import transformers -> ModuleNotFoundError\n"
        f"sys.argv = ['workbench', '--store', {str(store)!r}, 'export', 'show', 'example-e1', '--preview', '1']\n"
        "from ui.cli import main\n"
        "main()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip() == (
        "error: this command needs transformers, which the base install leaves out: pip install 'workbench[finetune]'"
    )


def test_bad_pipeline_config_names_the_key(tmp_path):
    cfg = tmp_path / "p.toml"
    cfg.write_text('[[ingest]]\nsource = "goemotions"\npaths = ["x"]\ntags = "ge"\n')
    proc = wb("run", "--config", str(cfg), store=tmp_path / "s", check=False)
    assert proc.returncode == 1 and "unknown key 'tags'" in proc.stderr and "p.toml" in proc.stderr


def test_ingest_and_snapshots_never_import_heavy_libraries(tmp_path, examples):
    # pandas is not in the list: pyarrow imports it by itself when it is installed.
    code = (
        "import sys\n"
        "from ui.cli import app\n"
        f"app(['--store', {str(tmp_path / 's')!r}, 'ingest', 'goemotions', {str(examples / 'goemotions')!r}],"
        " standalone_mode=False)\n"
        f"app(['--store', {str(tmp_path / 's')!r}, 'snapshots', 'list'], standalone_mode=False)\n"
        "heavy = [m for m in ('torch', 'transformers', 'peft', 'datasets', 'streamlit', 'sklearn')"
        " if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr


def test_store_option_accepts_fsspec_memory_url(tmp_path, examples):
    code = (
        "from ui.cli import app\nfrom curation.store import SnapshotStore\n"
        f"app(['--store', 'memory://cli-test', 'ingest', 'goemotions', {str(examples / 'goemotions')!r},"
        " '--tag', 'ge'], standalone_mode=False)\n"
        "s = SnapshotStore('memory://cli-test')\n"
        "assert s.manifest('ge')['counts']['goemotions']['train'] > 0\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr


def _bad_inputs(tmp: Path, ex: Path) -> dict[str, tuple[list[str], list[str]]]:
    """Each bad input of the issue, cut from the real example files: (ingest args, expected in the error)."""
    ge_empty = tmp / "ge_empty"
    shutil.copytree(ex / "goemotions", ge_empty)
    (ge_empty / "train.tsv").write_bytes(b"")

    (tmp / "es").mkdir()
    (tmp / "es" / "train.txt").write_bytes((ex / "esconv" / "hf" / "train.txt").read_bytes()[:3000])

    ed = (ex / "empatheticdialogues" / "train.csv").read_text(encoding="utf-8").split("\n")
    ed[5] = ",".join(ed[5].split(",")[:5])
    (tmp / "train.csv").write_text("\n".join(ed), encoding="utf-8")

    ge_utf = tmp / "ge_utf"
    shutil.copytree(ex / "goemotions", ge_utf)
    dev = (ge_utf / "dev.tsv").read_bytes().split(b"\n")
    dev[2] = dev[2][:10] + b"\xff\xfe" + dev[2][10:]
    (ge_utf / "dev.tsv").write_bytes(b"\n".join(dev))

    dd = tmp / "dd" / "train"
    shutil.copytree(ex / "dailydialog" / "ijcnlp_dailydialog" / "train", dd)
    acts = (dd / "dialogues_act_train.txt").read_text().split("\n")
    acts[9] = " ".join(acts[9].split()[:-1]) + " "
    (dd / "dialogues_act_train.txt").write_text("\n".join(acts))

    xz = (ex / "openwebtext" / "urlsf_subset00-1_data.xz").read_bytes()
    (tmp / "urlsf_subset00-1_data.xz").write_bytes(xz[: len(xz) // 2])

    return {
        "empty file": (["goemotions", str(ge_empty)], ["ge_empty/train.tsv", "file is empty"]),
        "wrong format": (["esconv", str(ex / "goemotions" / "train.tsv")], ["train.tsv", "line 1", "not an ESConv"]),
        "truncated JSON": (["esconv", str(tmp / "es")], ["es/train.txt", "line 1", "invalid JSON"]),
        "CSV field count": (["empatheticdialogues", str(tmp / "train.csv")], ["train.csv", "line 6", "got 5"]),
        "non-UTF-8": (["goemotions", str(ge_utf)], ["ge_utf/dev.tsv", "line 3", "UTF-8"]),
        "label count mismatch": (["dailydialog", str(tmp / "dd")], ["dialogues_train.txt", "line 10", "5 act labels"]),
        "truncated xz": (
            ["openwebtext", str(tmp / "urlsf_subset00-1_data.xz")],
            ["urlsf_subset00-1_data.xz", "truncated"],
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "empty file",
        "wrong format",
        "truncated JSON",
        "CSV field count",
        "non-UTF-8",
        "label count mismatch",
        "truncated xz",
    ],
)
def test_bad_input_is_one_clear_line_and_leaves_nothing(case, tmp_path, examples):
    args, expected = _bad_inputs(tmp_path, examples)[case]
    store = tmp_path / "store"
    proc = wb("ingest", *args, "--tag", "t", store=store, check=False)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for part in expected:
        assert part in lines[0], (part, lines[0])
    assert _store_is_empty(store)


def test_run_curates_the_examples_and_report_explains_it(ran):
    store, proc = ran
    assert "curate" in proc.stdout and "near_dedup" in proc.stdout
    manifest = json.loads(wb("snapshots", "show", "example-clean", "--json", store=store).stdout)
    assert len(manifest["parents"]) == 5
    kinds = [s["kind"] for s in manifest["steps"]]
    assert kinds[0] == "curate.normalize" and "curate.leak_free_splits" in kinds and "curate.near_dedup" in kinds
    out = wb("report", "example-clean", store=store).stdout
    assert "dropped by exact_dedup: exact_duplicate" in out and "exact_dedup.clusters" in out
    assert "label balance" in out
    rep = json.loads(wb("report", "example-clean", "--json", store=store).stdout)
    assert rep["drops"] and rep["balance"]


def test_curate_dry_run_writes_nothing(ran):
    store, _ = ran
    before = sorted(p.name for p in (store / "snapshots").iterdir())
    proc = wb("curate", "example-dd-raw", "example-ge-raw", "--dry-run", "--tag", "dry", store=store)
    assert "dry run" in proc.stdout and "would write" in proc.stdout
    assert sorted(p.name for p in (store / "snapshots").iterdir()) == before
    listed = json.loads(wb("snapshots", "list", "--json", store=store).stdout)
    assert "dry" not in {r for info in listed for r in info["refs"]}


def test_curate_bad_config_and_missing_ref_are_one_line_errors(ran, tmp_path):
    store, _ = ran
    before = sorted(p.name for p in (store / "snapshots").iterdir())
    cfg = tmp_path / "c.toml"
    cfg.write_text('[[step]]\nname = "near_dedup"\nthreshold = 1.5\n')
    proc = wb("curate", "example-dd-raw", "--config", str(cfg), "--tag", "x", store=store, check=False)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1 and len(lines) == 1
    assert "c.toml" in lines[0] and "near_dedup" in lines[0] and "threshold" in lines[0]
    cfg.write_text('[[step]]\nname = "min_turns"\nmin_turn = 2\n')
    proc = wb("curate", "example-dd-raw", "--config", str(cfg), store=store, check=False)
    assert proc.returncode == 1 and "unknown key 'min_turn'" in proc.stderr
    proc = wb("curate", "example-dd-raw", "nope-raw", store=store, check=False)
    assert proc.returncode == 1 and "no snapshot or ref named 'nope-raw'" in proc.stderr
    assert sorted(p.name for p in (store / "snapshots").iterdir()) == before


def test_list_steps_documents_every_step():
    out = wb("curate", "--list-steps", store=Path("/nonexistent")).stdout
    for name in ("normalize", "language", "quality", "pii", "safety", "exact_dedup", "near_dedup", "leak_free_splits"):
        assert f"{name} (" in out
    assert "bands * rows must equal num_perm" in out


def test_run_labels_offline_and_audit_reports(ran):
    store, _ = ran
    manifest = json.loads(wb("snapshots", "show", "example-labeled", "--json", store=store).stdout)
    step = manifest["steps"][0]
    assert step["kind"] == "label" and step["config"]["labeler"] == "local"
    assert manifest["label_distribution"]["strategy"]["model"]  # local labeler labels beside gold
    out = wb("audit", "example-labeled", "--task", "strategy", "--split", "test", store=store).stdout
    assert "accuracy" in out and "macro_f1" in out and "kappa" in out
    assert "computed on: split test" in out and "95 % CI" in out
    assert "confusion: rows gold, columns predicted" in out and "1 Question" in out
    dry = wb("label", "example-clean", "--task", "traits", "--model", "gpt-4o-mini", "--dry-run", store=store).stdout
    assert "what it would send (nothing was sent)" in dry and "requests" in dry and "{" not in dry
    everything = wb("audit", "example-labeled", "--task", "strategy", store=store).stdout
    assert "left out:" in everything and "the labeler was fitted on" in everything


def test_label_without_model_asks_for_one(ran):
    store, _ = ran
    proc = wb("label", "example-clean", "--task", "emotion", store=store, check=False)
    assert proc.returncode != 0 and "--model" in proc.stderr


def test_review_agreement_on_the_labeled_examples(ran):
    store, _ = ran
    rep = json.loads(wb("review", "agreement", "example-labeled", "--task", "strategy", "--json", store=store).stdout)
    llm_gold = rep["tasks"]["strategy"]["llm_gold"]
    assert llm_gold["units"] > 0 and 0 < llm_gold["alpha"] <= 1


def test_run_validates_the_labeled_examples(ran):
    store, proc = ran
    assert "validated snapshot" in proc.stdout
    manifest = json.loads(wb("snapshots", "show", "example-validated", "--json", store=store).stdout)
    assert manifest["status"] == "validated" and manifest["validation"]
    labeled = json.loads(wb("snapshots", "show", "example-labeled", "--json", store=store).stdout)["id"]
    assert manifest["parents"] == [labeled]
