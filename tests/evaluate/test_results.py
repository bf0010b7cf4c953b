"""evaluate.results: the documented report and training-log formats the dashboard's Results page reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluate.results import ResultsError, default_runs_dir, find_results, load_report, load_training_run

REPORT = {
    "name": "qlora vs base",
    "created_at": "2026-01-10T12:00:00Z",
    "snapshot": "f5ef0d757a7e5b92",
    "models": {"base": "TinyLlama/TinyLlama-1.1B-Chat-v1.0", "finetuned": "runs/qlora/adapter"},
    "metrics": [
        {"metric": "empathy_judge", "model": "base", "value": 2.9, "ci_low": 2.6, "ci_high": 3.2, "n": 30},
        {"metric": "empathy_judge", "model": "finetuned", "value": 3.6, "ci_low": 3.3, "ci_high": 3.9, "n": 30},
        {"metric": "json_validity", "model": "base", "value": 0.8, "higher_is_better": True},
        {"metric": "json_validity", "model": "finetuned", "value": 0.95},
    ],
}


def _write(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def test_a_report_loads_into_a_table_with_intervals_and_differences(tmp_path):
    report = load_report(_write(tmp_path / "eval.json", REPORT))
    assert report.name == "qlora vs base" and list(report.models) == ["base", "finetuned"]
    table = {row["metric"]: row for row in report.table()}
    assert table["empathy_judge"]["base"] == 2.9 and table["empathy_judge"]["finetuned CI"] == "[3.3, 3.9]"
    assert table["empathy_judge"]["finetuned - base"] == pytest.approx(0.7)
    assert table["json_validity"]["base CI"] == "" and table["empathy_judge"]["n"] == 30


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"models": {}}, "'models' must map"),
        ({"metrics": []}, "'metrics' must be a non-empty list"),
        ({"metrics": [{"metric": "x", "model": "large", "value": 1}]}, r"metrics\[0\].model: 'large' is not one"),
        ({"metrics": [{"metric": "x", "model": "base", "value": "high"}]}, r"metrics\[0\].value: expected a finite"),
        ({"metrics": [{"metric": "x", "model": "base", "value": 1, "ci_low": 2, "ci_high": 1}]}, "ci_low <= ci_high"),
        ({"metrics": [{"metric": "x", "model": "base", "value": 1, "ci_low": 0.5}]}, "give both"),
        ({"metrics": [{"model": "base", "value": 1}]}, r"metrics\[0\].metric: expected a name"),
        ({"metrics": [{"metric": "x", "model": "base", "value": 1, "n": -3}]}, r"\.n: expected a count"),
    ],
)
def test_a_bad_report_names_the_file_and_the_field(tmp_path, change, match):
    path = _write(tmp_path / "eval.json", {**REPORT, **change})
    with pytest.raises(ResultsError, match=match) as err:
        load_report(path)
    assert str(path) in str(err.value)


def test_training_logs_from_metrics_jsonl_and_trainer_state(tmp_path):
    lines = [{"step": 10, "loss": 2.0, "learning_rate": 1e-4}, {"step": 20, "loss": 1.5, "eval_loss": 1.7}]
    _write(tmp_path / "a" / "metrics.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n\n")
    _write(tmp_path / "a" / "run.json", {"base_model": "tiny", "snapshot": "abc"})
    run = load_training_run(tmp_path / "a")
    assert run.series == ["eval_loss", "learning_rate", "loss"] and run.info["base_model"] == "tiny"
    assert {"run": "a", "step": 20.0, "series": "eval_loss", "value": 1.7} in run.long()
    history = [{"step": 5, "loss": 3.0, "epoch": 0.1}, {"step": 10, "eval_loss": 2.5, "epoch": 0.2}]
    _write(tmp_path / "b" / "trainer_state.json", {"log_history": history, "global_step": 10})
    hf = load_training_run(tmp_path / "b")
    assert [row["step"] for row in hf.log] == [5.0, 10.0] and hf.series == ["epoch", "eval_loss", "loss"]
    _write(tmp_path / "c" / "metrics.jsonl", '{"step": 1, "loss": 1}\nnot json\n')
    with pytest.raises(ResultsError, match=r"metrics\.jsonl, line 2: not JSON"):
        load_training_run(tmp_path / "c")
    _write(tmp_path / "d" / "metrics.jsonl", '{"loss": 1}\n')
    with pytest.raises(ResultsError, match="no 'step'"):
        load_training_run(tmp_path / "d")


def test_find_results_walks_the_runs_folder_and_lists_bad_files(tmp_path):
    runs = tmp_path / "runs"
    _write(runs / "qlora" / "metrics.jsonl", '{"step": 1, "loss": 2.5}\n')
    _write(runs / "qlora" / "checkpoint-100" / "trainer_state.json", {"log_history": [{"step": 100, "loss": 1}]})
    _write(runs / "qlora" / "eval.json", REPORT)
    _write(runs / "eval-broken.json", {"models": {}})
    _write(runs / "notes.json", {"anything": 1})  # not a report name: ignored
    found = find_results(runs)
    assert [r.name for r in found.runs] == ["qlora"]  # checkpoints are skipped
    assert [r.name for r in found.reports] == ["qlora vs base"]
    assert len(found.errors) == 1 and "eval-broken.json" in found.errors[0]
    assert find_results(tmp_path / "missing").empty and find_results(None).empty


def test_default_runs_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("WORKBENCH_RUNS", raising=False)
    assert default_runs_dir(str(tmp_path / "store")) == tmp_path / "runs"
    assert default_runs_dir("s3://bucket/store") is None
    monkeypatch.setenv("WORKBENCH_RUNS", str(tmp_path / "elsewhere"))
    assert default_runs_dir("s3://bucket/store") == tmp_path / "elsewhere"
