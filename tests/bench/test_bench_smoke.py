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
