"""``csrm score``: located input errors, atomic output in input order, and resuming after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from scoring_fixtures import read_rows, write_input

import csrm.scoring.scorer
from csrm.app.cli import main as csrm_main
from csrm.app.score import main
from csrm.base.errors import InputError
from csrm.base.safety_config import SafetyConfig
from csrm.scoring.score_file import CHUNK_ITEMS, read_done, read_items
from csrm.scoring.scorer import Scorer

ROOT = Path(__file__).resolve().parents[2]


def run(encoder_model_dir: Path, inp: Path, out: Path, *extra: str) -> int:
    return main([str(encoder_model_dir), "--input", str(inp), "--output", str(out), "--batch-tokens", "256",
                 "--no-progress", *extra])


@pytest.mark.parametrize(("line", "field"), [
    ({"config": "c", "prompt": "p"}, "id"),
    ({"id": 1, "prompt": "p"}, "config"),
    ({"id": 1, "config": "", "prompt": "p"}, "config"),
    ({"id": 1, "config": "c"}, "prompt"),
    ({"id": 1, "config": "c", "prompt": "p", "messages": []}, "prompt"),
    ({"id": 1, "config": "c", "messages": [{"role": "robot", "content": "x"}]}, "messages"),
    ({"id": 1, "config": "c", "prompt": "p", "response": 3}, "response"),
    ({"id": 1, "config": {"allow": {"Violence": 7}}, "prompt": "p"}, "config.allow.Violence"),
    ({"id": [1], "config": "c", "prompt": "p"}, "id"),
])
def test_bad_lines_name_file_line_and_field(tmp_path, line, field):
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"id": "ok", "config": "c", "prompt": "p"}) + "\n\n" + json.dumps(line) + "\n")
    with pytest.raises(InputError) as err:
        read_items(path)
    assert (err.value.path, err.value.line, err.value.field) == (str(path), 3, field)
    assert str(err.value).startswith(f"{path}:3: field '{field}'")


def test_duplicate_ids_and_malformed_json_are_located(tmp_path, encoder_model_dir, capsys):
    path = tmp_path / "in.jsonl"
    path.write_text('{"id": 1, "config": "c", "prompt": "p"}\n{"id": "1", "config": "c", "prompt": "q"}\n')
    with pytest.raises(InputError, match=r"in.jsonl:2: field 'id': duplicate id '1' \(first on line 1\)"):
        read_items(path)
    path.write_text('{"id": 1, "config": "c", "prompt": "p"}\n{"id": 2,\n')
    # through the `csrm` dispatcher: exit status 2 and the located message, before any model loads
    assert csrm_main(["score", "/nonexistent-model", "--input", str(path), "--output", str(tmp_path / "o")]) == 2
    assert "in.jsonl:2: malformed JSON" in capsys.readouterr().err


def test_scores_every_item_in_input_order_like_the_library(tmp_path, encoder_model_dir):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    rows = write_input(inp)
    assert run(encoder_model_dir, inp, out) == 0
    got = read_rows(out)
    assert [r["id"] for r in got] == [r["id"] for r in rows]
    assert not out.with_name("out.jsonl.partial").exists()
    scorer = csrm.scoring.scorer.load(encoder_model_dir)
    for row, result in zip(rows[:8], got[:8], strict=True):
        prompt = row.get("messages") or row["prompt"]
        config = row["config"] if isinstance(row["config"], str) else SafetyConfig.from_dict(row["config"])
        expected = scorer.score(config, prompt, row["response"])
        assert result["p_comply"] == pytest.approx(expected.p_comply, abs=1e-5)
        assert result["reward"] == pytest.approx(expected.reward, abs=1e-5)
        assert result["complies"] == expected.complies and result["p_violation"] == pytest.approx(1 - result["p_comply"])


def test_resumes_after_a_crash_without_duplicates(tmp_path, encoder_model_dir, monkeypatch):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    rows = write_input(inp)
    clean = tmp_path / "clean.jsonl"
    run(encoder_model_dir, inp, clean)
    original = Scorer.iter_batches

    def crash_after_three(self, items, thresholds=None):
        for n, batch in enumerate(original(self, items, thresholds)):
            if n == 3:
                raise KeyboardInterrupt("simulated kill")
            yield batch

    monkeypatch.setattr(Scorer, "iter_batches", crash_after_three)
    with pytest.raises(KeyboardInterrupt):
        run(encoder_model_dir, inp, out)
    partial = out.with_name("out.jsonl.partial")
    done = read_rows(partial)
    assert 0 < len(done) < len(rows) and not out.exists()
    with open(partial, "a") as handle:  # a kill mid-write leaves a torn last line
        handle.write('{"id": "item-9", "p_com')
    rescored = []

    def counting(self, items, thresholds=None):
        rescored.extend(i.item_id for i in items)
        yield from original(self, items, thresholds)

    monkeypatch.setattr(Scorer, "iter_batches", counting)
    run(encoder_model_dir, inp, out)
    # every block of CHUNK_ITEMS input lines holding a missing id is scored whole (the batches of an
    # uninterrupted run), a complete block not at all; the rows already there are not written again
    ids = [r["id"] for r in rows]
    blocks = [ids[i:i + CHUNK_ITEMS] for i in range(0, len(ids), CHUNK_ITEMS)]
    have = {r["id"] for r in done}
    assert sorted(rescored) == sorted(i for b in blocks if not set(b) <= have for i in b)
    got = read_rows(out)
    assert [r["id"] for r in got] == ids  # all ids, once each, in input order
    assert out.read_bytes() == clean.read_bytes()  # byte-identical to the uninterrupted run
    assert not partial.exists()


def full_row(item_id: str) -> str:
    return json.dumps({"id": item_id, "p_comply": 0.25, "p_violation": 0.75, "reward": -1.0, "complies": False,
                       "threshold": 0.5, "config_id": "k"})


def test_read_done_cuts_a_torn_line(tmp_path):
    partial = tmp_path / "x.partial"
    partial.write_text(f'{full_row("a")}\n{full_row("b")}\n{{"id": "c", "p')
    assert list(read_done(partial)) == ["a", "b"]
    assert partial.read_text() == f"{full_row('a')}\n{full_row('b')}\n"


def test_read_done_drops_corrupt_lines_and_rewrites_the_file(tmp_path):
    partial = tmp_path / "x.partial"
    lines = [full_row("a"), "{not json", full_row("b").replace('"reward": -1.0', '"reward": "x"'),
             '{"id": "c"}', full_row("d"), full_row("d"), full_row("stale"), "\udcff", full_row("e")]
    partial.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogateescape")
    assert list(read_done(partial, wanted={"a", "b", "c", "d", "e"})) == ["a", "d", "e"]
    assert partial.read_text() == "".join(full_row(i) + "\n" for i in "ade")


@pytest.mark.slow
def test_real_kill_and_rerun(tmp_path, encoder_model_dir):
    """SIGKILL a real `csrm score` process mid-run (batches slowed so the kill lands), then finish it."""
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    rows = write_input(inp, n=80)
    partial = out.with_name("out.jsonl.partial")
    script = textwrap.dedent(f"""
        import sys, time
        from csrm.scoring.scorer import Scorer
        original = Scorer.iter_batches
        def slow(self, items, thresholds=None):
            for batch in original(self, items, thresholds):
                time.sleep(0.3)
                yield batch
        Scorer.iter_batches = slow
        from csrm.app.cli import main
        sys.exit(main(["score", {str(encoder_model_dir)!r}, "--input", {str(inp)!r}, "--output", {str(out)!r},
                       "--batch-tokens", "128", "--no-progress", "--threads", "1"]))
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if partial.exists() and partial.read_text().count("\n") >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    killed_with = len(read_done(partial))
    assert 2 <= killed_with < len(rows) and not out.exists()
    run(encoder_model_dir, inp, out)
    ids = [r["id"] for r in read_rows(out)]
    assert ids == [r["id"] for r in rows] and len(set(ids)) == len(ids)
