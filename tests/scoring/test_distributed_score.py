"""``csrm score`` under ``torchrun --nproc_per_node 2`` (gloo on CPU): shards scored per process, merged in
input order, equal to a single-process run, and resumable per shard."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from scoring_fixtures import read_rows, save, tiny_encoder, write_input

from csrm.app.score import main as score_main
from csrm.scoring.distributed_score import merge_shards, shard_fingerprint, shard_path
from csrm.scoring.score_file import ScoreConfig, fingerprint_path, read_items

ROOT = Path(__file__).resolve().parents[2]
SENTINEL = 0.123456789


def test_merge_needs_every_shard_and_keeps_input_order(tmp_path):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(inp, n=7)
    entries = read_items(inp)
    ids = [e[0] for e in entries]
    for rank in range(3):
        rows = [{"id": i, "p_comply": 0.5} for i in reversed(ids[rank::3])]  # any order inside a shard
        shard_path(out, rank, 3).write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert merge_shards(entries, out, 3) == 7
    assert [r["id"] for r in read_rows(out)] == ids
    assert not any(shard_path(out, rank, 3).exists() for rank in range(3))
    shard_path(out, 0, 2).write_text(json.dumps({"id": ids[0]}) + "\n")
    shard_path(out, 1, 2).write_text("")
    with pytest.raises(RuntimeError, match="ids missing"):
        merge_shards(entries, out, 2)


@pytest.mark.slow
def test_torchrun_two_processes_match_one_and_resume_per_shard(tmp_path):
    model = save(*tiny_encoder(), tmp_path / "model")
    inp, out, single = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "single.jsonl"
    rows = write_input(inp, n=40)
    assert score_main([str(model), "--input", str(inp), "--output", str(single), "--no-progress"]) == 0
    # a killed earlier run left rank 1's partial shard with three rows: they must be kept, not rescored
    shard1 = [r["id"] for r in rows][1::2]
    planted = {i: {"id": i, "p_comply": SENTINEL, "p_violation": 1 - SENTINEL, "reward": 0.0, "complies": True,
                   "threshold": 0.5, "config_id": "x"} for i in shard1[:3]}
    partial = shard_path(out, 1, 2).with_name(shard_path(out, 1, 2).name + ".partial")
    partial.write_text("".join(json.dumps(r) + "\n" for r in planted.values()))
    # ... and the fingerprint that run recorded beside it (csrm/base/fingerprint.py): same model, input and shard
    cfg = ScoreConfig(model=str(model), input=str(inp), output=str(out))
    fingerprint_path(partial).write_text(json.dumps(shard_fingerprint(cfg, "cpu", 1, 2)))
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "csrm", "score", str(model), "--input", str(inp), "--output", str(out),
                           "--no-progress", "--threads", "1", "--batch-tokens", "256"],
                          env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary == {"output": str(out), "items": 40, "resumed": 3, "scored": 37, "processes": 2}
    got, expected = read_rows(out), read_rows(single)
    assert [r["id"] for r in got] == [r["id"] for r in rows]  # merged in input order, each id once
    for a, b in zip(got, expected, strict=True):
        if a["id"] in planted:
            assert a["p_comply"] == SENTINEL
        else:
            assert a["p_comply"] == pytest.approx(b["p_comply"], abs=1e-5)
            assert a["reward"] == pytest.approx(b["reward"], abs=1e-5) and a["complies"] == b["complies"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("out.jsonl")) == ["out.jsonl"]
