"""``workbench finetune`` and ``workbench runs`` as a user runs them: real processes, a real export.

The store holds the raw ESConv example slice (ingest) and a response export of it
(``--allow-unvalidated``: the curation stages have their own tests); the run is the
tiny random model for two optimizer steps without evaluation (test_train.py covers it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")

ROOT = Path(__file__).resolve().parents[2]
SMALL = [
    "--set",
    "max_length=128",
    "--set",
    "per_device_train_batch_size=2",
    "--set",
    "gradient_accumulation_steps=1",
    "--set",
    "eval_split=''",  # evaluation and early stopping: test_train.py (an eval pass costs ~30 s here)
    "--set",
    "save_steps=2",
    "--set",
    "logging_steps=1",
    "--set",
    "gradient_checkpointing=false",
]


def wb(*args: str, store: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "WORKBENCH_STORE": str(store), "COLUMNS": "200", "NO_COLOR": "1"}
    proc = subprocess.run([sys.executable, "-m", "ui.cli", *args], capture_output=True, text=True, env=env, cwd=ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"workbench {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("ft-cli") / "store"
    wb("ingest", "esconv", str(ROOT / "examples/data/esconv/hf"), "--tag", "esconv-raw", store=store)
    wb("export", "esconv-raw", "--tasks", "response", "--allow-unvalidated", "--tag", "e1", store=store)
    return store


@pytest.fixture(scope="module")
def finished(store) -> tuple[Path, subprocess.CompletedProcess]:
    out = store.parent / "runs" / "r1"
    args = ("finetune", "e1", "--tiny", "--config", "examples/qlora.toml", "--out", str(out), "--max-steps", "2")
    return out, wb(*args, *SMALL, store=store)


def test_finetune_trains_the_tiny_model_on_an_export(store, finished):
    out, proc = finished
    assert "tiny random model: this run only demonstrates the fine-tuning path" in proc.stdout
    assert "of their tokens carry loss" in proc.stdout
    assert f"run {out} finished at step 2" in proc.stdout
    info = json.loads((out / "run.json").read_text())
    manifest = json.loads(next((store / "exports").glob("*/manifest.json")).read_text())
    assert info["status"] == "finished" and info["export"] == manifest["id"]
    assert info["snapshot"] == manifest["snapshot"]["id"] and info["tasks"] == ["response"]
    assert (out / "adapter" / "adapter_model.safetensors").is_file()


def test_runs_list_and_show(store, finished):
    out, _ = finished
    listed = wb("runs", "list", "--runs", str(out.parent), store=store).stdout
    assert "r1" in listed and "finished" in listed and "(tiny)" in listed
    shown = wb("runs", "show", str(out), store=store).stdout
    for text in ("lineage", "export:", "snapshot:", "chat_template_sha256:", "adapter:", "trained tokens/s"):
        assert text in shown
    assert "lora_r = 16" in shown  # the resolved config
    as_json = json.loads(wb("runs", "show", str(out), "--json", store=store).stdout)
    assert as_json["status"] == "finished" and as_json["steps"] == 2
    # runs beside the store are the default (as for the dashboard)
    assert "r1" in wb("runs", "list", store=store).stdout


def test_a_finished_run_is_refused_without_a_traceback(store, finished):
    out, _ = finished
    before = (out / "run.json").read_text()
    proc = wb("finetune", "e1", "--tiny", "--out", str(out), store=store, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "holds a finished run; choose another --out" in proc.stderr
    proc = wb("finetune", "e1", "--resume", str(out), store=store, check=False)
    assert proc.returncode == 1 and "already finished" in proc.stderr
    assert (out / "run.json").read_text() == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--base-model", "/nonexistent/model"], "no such folder, and not a hub id"),
        (["--base-model", "/nonexistent/model", "--set", "tasks=['emotion']"], "holds task(s) response that the"),
        (["--tiny", "--set", "lora_r=0"], "lora_r: must be at least 1"),
    ],
)
def test_bad_input_is_one_line(store, tmp_path, args, message):
    # (each refusal is tested in test_train_errors.py; here: one line on stderr, exit 1, nothing written)
    out = tmp_path / "runs" / "bad"
    proc = wb("finetune", "e1", "--out", str(out), *args, store=store, check=False)
    assert proc.returncode == 1, proc.stdout
    assert "Traceback" not in proc.stderr
    assert message in proc.stderr
    assert not out.parent.exists()


def test_help_does_not_import_torch(store):
    code = (
        "import sys, ui.cli\n"
        "from typer.testing import CliRunner\n"
        "for args in (['--help'], ['finetune', '--help'], ['runs', 'list', '--runs', sys.argv[1]]):\n"
        "    result = CliRunner().invoke(ui.cli.app, args)\n"
        "    assert result.exit_code == 0, result.output\n"
        "heavy = [m for m in ('torch', 'transformers', 'peft', 'trl', 'datasets') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code, str(store.parent / "runs")], check=True, cwd=ROOT)
