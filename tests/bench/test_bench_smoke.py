"""Smoke runs of the benchmarks in bench/ at tiny sizes: each completes and writes its JSON with a ratio.

The scripts run in this process (their ``main(argv)``), so torch and transformers are imported once; the real
sizes and the latest numbers are in bench/README.md.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "bench"

CASES = {
    "bench_scoring": ["--items", "12", "--max-length", "64", "--slices", "2", "--batch-size", "4"],
    "bench_prefix": ["--groups", "2", "--responses", "3", "--hidden", "64", "--layers", "2", "--config-tokens", "40",
                     "--response-tokens", "5", "15", "--repeats", "1", "--warmup", "0"],
    "bench_training": ["--tiny", "--in-process", "--steps", "1", "--warmup-steps", "1", "--repeats", "1",
                       "--pairs", "2", "--max-length", "64"],
    "bench_hardware": ["--items", "8", "--max-length", "64", "--matmul-size", "128", "--peak-seconds", "0.05",
                       "--repeats", "1"],
    "bench_augmentation": ["--records", "400", "--small", "100", "--in-process"],
    "bench_clause": ["--tiny", "--in-process", "--groups", "1", "--group-size", "3", "--configs", "4", "--repeats",
                     "1", "--warmup", "0", "--trl-seconds", "1", "--eval-every", "50", "--pairs", "2",
                     "--max-length", "64", "--clause-set", "reader_steps=5", "num_train_epochs=1"],
}


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("name", list(CASES))
def test_benchmark_runs_and_writes_its_ratio(name, tmp_path, capsys):
    out = tmp_path / f"{name}.json"
    load(name).main([*CASES[name], "--threads", "1", "--out", str(out)])
    data = json.loads(out.read_text())
    assert isinstance(data["ratio"], float) and math.isfinite(data["ratio"]) and data["ratio"] > 0
    assert data["command"] and data["machine"]["threads"] == 1
    assert "RATIO " in capsys.readouterr().out.strip().splitlines()[-1]


def test_rule_judge_bench_runs_against_the_clause_scorer(tmp_path, shared_data, monkeypatch, capsys):
    """bench_rule_judge on a tiny rule judge trained here (seconds) and the first DynaBench items."""
    spec = importlib.util.spec_from_file_location(
        "rule_judge_fixtures", BENCH.parent / "tests" / "rule_judge_fixtures.py")
    fixtures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixtures)
    from csrm.base.config import build
    from csrm.model.rule.args import RuleJudgeArgs
    from csrm.model.rule.trainer import train

    monkeypatch.setenv("CSRM_DATA_DIR", str(shared_data))
    judge = tmp_path / "judge"
    train(build(RuleJudgeArgs, {"dataset_path": str(fixtures.write_dataset(tmp_path / "data")),
                                "output_dir": str(judge), "max_train_pairs": 32, "batch_size": 16,
                                "model_name_or_path": str(fixtures.tiny_backbone(tmp_path / "tiny")),
                                "max_length": 96, "rule_max_tokens": 24, "context_max_tokens": 16,
                                "calibration_items": 10, "threads": 1}), progress=False)
    out = tmp_path / "bench_rule_judge.json"
    data = load("bench_rule_judge").main(["--model", str(judge), "--items", "3", "--threads", "1", "--out", str(out)])
    assert data["items"] == 3 and 0 < data["pairs_read"] <= data["pairs_without_narrowing"]
    assert math.isfinite(data["ratio"]) and data["ratio"] > 0 and json.loads(out.read_text())["ratio"] == data["ratio"]
