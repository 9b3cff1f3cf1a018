"""A bounded loopback load test of ``csrm serve``: concurrent clients on 127.0.0.1 mixing valid, large (capped),
invalid and oversized requests with bearer auth on; every valid request is answered as the library answers it,
every other gets its 4xx, nothing gets a 5xx, all within a time bound. Runs ``bench/bench_serve_load.py`` at a
small size (the full-size figures are in bench/README.md)."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_serve_load.py"


def test_concurrent_mixed_clients_get_correct_answers_and_4xx_only(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_serve_load", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    before = torch.get_num_threads()
    start = time.perf_counter()
    try:
        result = bench.main(["--tiny", "--clients", "6", "--requests", "12", "--threads", "1",
                             "--out", str(tmp_path / "serve_load.json")])
    finally:
        torch.set_num_threads(before)
    assert time.perf_counter() - start < 90
    assert result["requests"] == 72 and result["clients"] == 6
    assert set(result["per_kind"]) == {"valid", "large", "invalid", "oversized"}, result["per_kind"]
    assert result["errors"] == 0, result["error_samples"]
    assert result["server_5xx"] == 0 and result["valid_correct"] == result["valid"] > 20
    assert result["server"]["max_requests_per_batch"] > 1  # clients really were batched together
    saved = json.loads((tmp_path / "serve_load.json").read_text())
    assert saved["ratio"] == 1.0 and saved["latency_ms"]["valid_p99"] > 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("RATIO valid_answered_correctly=1.00")


@pytest.mark.slow
def test_fault_bench_runs_the_real_command_and_reports_its_figures(tmp_path, capsys):
    """``bench/bench_serve_fault.py`` at a tiny size: ``python -m csrm serve`` as a subprocess on 127.0.0.1 over a
    tiny random model, a burst of 6 requests, the injection probe; the server stops with the script."""
    spec = importlib.util.spec_from_file_location("bench_serve_fault", BENCH.with_name("bench_serve_fault.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    start = time.perf_counter()
    result = bench.main(["--requests", "6", "--items", "4", "--request-timeout", "30", "--max-seconds", "120",
                         "--out", str(tmp_path / "fault.json")])
    assert time.perf_counter() - start < 180
    burst = result["burst"]
    assert burst["requests"] == 6 and burst["admitted"] + burst["shed"] == 6 and burst["other"] == 0
    assert burst["succeeded"] == burst["admitted"] >= 1 and burst["recovered"]
    assert result["server_rss_mib"]["before"] > 50 and result["server_rss_mib"]["after"] > 50
    probe = result["injection"]
    assert {"without_injection", "with_injection", "with_injection_old_parser"} <= set(probe)
    assert json.loads((tmp_path / "fault.json").read_text())["burst"]["requests"] == 6
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("RATIO admitted_requests_succeeded=1.00")
