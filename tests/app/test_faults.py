"""The fault suite: real ``kill -9`` of ``csrm run`` (in its augment and train stages), ``csrm score`` and
``csrm align`` (in its DPO step), then a resume compared with an uninterrupted run; and resumes that would mix
two runs (another model, input or setting) refused with exit 2 unless ``--restart``.

Each killed child is a real ``csrm`` process that writes a marker file at a chosen point (after part of the
augmentation output, after a training checkpoint, before DPO) and then stalls, so the SIGKILL lands inside
the stage on every machine. Tiny models (``configs/train/tiny_test.yaml``, the align tests' 2-layer policy),
one torch thread in the children and here, so the runs are bitwise comparable."""

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
import torch
import yaml
from align_fixtures import recipe_overrides, threads  # noqa: F401 - threads: an autouse fixture
from safetensors.torch import load_file
from scoring_fixtures import CONFIGS, PROMPTS, RESPONSES, save, tiny_encoder

from csrm.app.cli import main as csrm_main
from csrm.base.errors import InputError

ROOT = Path(__file__).resolve().parents[2]


def kill_at_marker(script: str, marker: Path, log: Path, timeout: float = 300) -> None:
    """Run ``script`` in a fresh Python, wait for it to create ``marker``, then SIGKILL it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CSRM_MARKER": str(marker)}
    prelude = textwrap.dedent("""
        import os, sys, time
        from pathlib import Path
        import torch
        torch.set_num_threads(1)
        def stall():
            Path(os.environ["CSRM_MARKER"]).write_text("here")
            time.sleep(600)
    """)
    with open(log, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-c", prelude + textwrap.dedent(script)], env=env,
                                stdout=subprocess.DEVNULL, stderr=err)
        try:
            deadline = time.time() + timeout
            while time.time() < deadline and proc.poll() is None and not marker.exists():
                time.sleep(0.05)
            assert proc.poll() is None and marker.exists(), log.read_text(errors="replace")[-3000:]
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=30) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    marker.unlink()


# -- csrm run: kill -9 in the augment stage, then in the train stage, then resume ------------------------------
def run_recipe(tmp: Path, name: str) -> Path:
    recipe = {"name": "faults", "output_dir": str(tmp / name), "augment": "configs/augment/seed.yaml",
              "train": "configs/train/tiny_test.yaml", "bench": ["augmented"], "eval_limit": 40,
              "train_overrides": ["max_steps=8", "save_strategy=steps", "save_steps=4", "eval_strategy=no",
                                  "logging_steps=4", "max_train_examples=64", "max_train_pairs=32"]}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


KILL_IN_AUGMENT = """
    import augmentation.pipeline as ap
    original, written = ap._write_jsonl, []
    def write(path, rows):
        original(path, rows)
        written.append(path)
        if len(written) == 2:  # half of the output files are in the temporary folder
            stall()
    ap._write_jsonl = write
    from csrm.app.cli import main
    sys.exit(main(["run", sys.argv[1]]))
"""

KILL_IN_TRAIN = """
    from csrm.model.cross_encoder.trainer import CSRMTrainer
    original = CSRMTrainer._save_checkpoint
    def save(self, model, trial):
        original(self, model, trial)
        if self.state.global_step == 4:  # checkpoint-4 is complete; steps 5-8 are not done
            stall()
    CSRMTrainer._save_checkpoint = save
    from csrm.app.cli import main
    sys.exit(main(["run", sys.argv[1]]))
"""


@pytest.mark.slow
def test_csrm_run_killed_in_augment_and_in_train_resumes_to_the_uninterrupted_result(tmp_path):
    from csrm.app.pipeline import Pipeline, load_pipeline_config

    Pipeline(load_pipeline_config(run_recipe(tmp_path, "clean")), log=lambda _: None).run()
    clean, out = tmp_path / "clean", tmp_path / "killed"
    recipe = run_recipe(tmp_path, "killed")
    marker, log = tmp_path / "marker", tmp_path / "child.log"

    kill_at_marker(KILL_IN_AUGMENT.replace("sys.argv[1]", repr(str(recipe))), marker, log)
    assert not (out / "data").exists() and list(out.glob(".data.*.tmp"))  # only a temporary folder

    kill_at_marker(KILL_IN_TRAIN.replace("sys.argv[1]", repr(str(recipe))), marker, log)
    assert (out / "data" / "manifest.json").is_file() and not list(out.glob(".data.*.tmp"))
    assert not (out / "model").exists()
    assert [p.name for p in (out / "model-checkpoints").glob("checkpoint-*")] == ["checkpoint-4"]

    logs: list[str] = []
    Pipeline(load_pipeline_config(recipe), log=logs.append).run()
    assert any("augment: reused" in line for line in logs)
    for name in ("examples.train.jsonl", "examples.validation.jsonl", "pairs.train.jsonl",
                 "pairs.validation.jsonl"):
        assert (out / "data" / name).read_bytes() == (clean / "data" / name).read_bytes(), name
    results = json.loads((out / "model" / "train_results.json").read_text())
    assert results["resumed_from"].endswith("checkpoint-4") and results["global_step"] == 8
    reference = load_file(str(clean / "model" / "model.safetensors"))
    weights = load_file(str(out / "model" / "model.safetensors"))
    for name, tensor in reference.items():
        torch.testing.assert_close(weights[name], tensor, atol=1e-6, rtol=1e-5)
    got = json.loads((out / "report.json").read_text())["benchmarks"]["augmented"]["csrm"]
    expected = json.loads((clean / "report.json").read_text())["benchmarks"]["augmented"]["csrm"]
    for key in ("n_test", "f1", "auroc", "ece"):
        assert got.get(key) == pytest.approx(expected.get(key), abs=1e-6), key


# -- csrm score: kill -9, resume, and resumes that would mix runs ----------------------------------------------
@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("models")
    return save(*tiny_encoder(seed=0), folder / "a"), save(*tiny_encoder(seed=1), folder / "b")


def score_input(path: Path, n: int = 80) -> None:
    rows = [{"id": f"i{i}", "config": CONFIGS[i % 3], "prompt": PROMPTS[i % 3] + " more" * (i % 9),
             "response": RESPONSES[i % 5]} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def score(model: Path, inp: Path, out: Path, *extra: str) -> int:
    return csrm_main(["score", str(model), "--input", str(inp), "--output", str(out), "--batch-tokens", "128",
                      "--no-progress", "--threads", "1", *extra])


def rows(path: Path) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, path.read_text().splitlines())}


KILL_IN_SCORE = """
    from csrm.scoring.scorer import Scorer
    original = Scorer.iter_batches
    def batches(self, items, thresholds=None):
        for n, batch in enumerate(original(self, items, thresholds)):
            yield batch
            if n == 3:  # four batches are flushed to the partial file
                stall()
    Scorer.iter_batches = batches
    from csrm.app.cli import main
    sys.exit(main(ARGV))
"""


@pytest.mark.slow
def test_csrm_score_killed_resumes_equal_to_an_uninterrupted_run_and_refuses_to_mix(tmp_path, models, capsys):
    model_a, model_b = models
    inp, clean, out = tmp_path / "in.jsonl", tmp_path / "clean.jsonl", tmp_path / "out.jsonl"
    score_input(inp)
    assert score(model_a, inp, clean) == 0
    argv = ["score", str(model_a), "--input", str(inp), "--output", str(out), "--batch-tokens", "128",
            "--no-progress", "--threads", "1"]
    kill_at_marker(KILL_IN_SCORE.replace("ARGV", repr(argv)), tmp_path / "marker", tmp_path / "child.log")
    partial = out.with_name("out.jsonl.partial")
    fingerprint = out.with_name("out.jsonl.partial.fingerprint.json")
    kept = partial.read_text()
    assert 4 <= kept.count("\n") < 80 and fingerprint.is_file() and not out.exists()

    # another model, or a changed input, is refused (exit 2, naming what changed); nothing is touched
    assert score(model_b, inp, out) == 2
    assert "field 'model'" in capsys.readouterr().err
    changed = tmp_path / "changed.jsonl"
    changed.write_text(inp.read_text().replace("i79", "i79x"))
    assert csrm_main(["score", str(model_a), "--input", str(changed), "--output", str(out), "--no-progress"]) == 2
    assert "field 'input'" in capsys.readouterr().err
    assert partial.read_text() == kept

    # a corrupt line in the middle is dropped and its item scored again
    lines = kept.splitlines(keepends=True)
    lost = json.loads(lines[1])["id"]
    lines[1] = '{"id": "' + lost + '", "p_comply": 0.5, "rew\n'
    partial.write_text("".join(lines))
    assert score(model_a, inp, out) == 0
    got, expected = rows(out), rows(clean)
    assert list(got) == list(expected)  # every id once, in input order
    for item_id, row in expected.items():
        assert got[item_id]["p_comply"] == pytest.approx(row["p_comply"], abs=1e-6), item_id
        assert got[item_id]["complies"] == row["complies"]
    assert not partial.exists() and not fingerprint.exists()


def test_restart_discards_a_partial_from_another_model(tmp_path, models, capsys):
    model_a, model_b = models
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    score_input(inp, n=12)
    partial = out.with_name("out.jsonl.partial")
    partial.write_text('{"id": "i0", "p_comply": 0.5}\n')  # an old partial without a fingerprint
    assert score(model_b, inp, out) == 2
    err = capsys.readouterr().err
    assert "no fingerprint file" in err and "--restart" in err
    assert score(model_b, inp, out, "--restart") == 0
    clean = tmp_path / "clean.jsonl"
    assert score(model_b, inp, clean) == 0
    assert rows(out) == rows(clean)


# -- csrm align: kill -9 in the DPO step, resume, and a changed judge refused -----------------------------------
KILL_IN_DPO = """
    import transformers
    original, steps = transformers.Trainer.training_step, []
    def step(self, *args, **kwargs):
        loss = original(self, *args, **kwargs)
        steps.append(1)
        if len(steps) == 2:  # two DPO steps done, the policy not yet saved
            stall()
        return loss
    transformers.Trainer.training_step = step
    from csrm.app.cli import main
    sys.exit(main(ARGV))
"""


@pytest.mark.slow
def test_csrm_align_killed_in_dpo_resumes_to_the_uninterrupted_result(
        tmp_path, tiny_policy, tiny_csrm, item_files):  # noqa: F811 - fixtures imported from test_align
    from csrm.alignment.align import run_align
    from csrm.alignment.config import AlignConfig

    def overrides(out: Path) -> list[str]:
        return recipe_overrides(out, tiny_policy, tiny_csrm, item_files, rounds="1", **{"eval.enabled": "false"})

    run_align(AlignConfig.load(None, overrides(tmp_path / "clean")))
    out = tmp_path / "killed"
    kill_at_marker(KILL_IN_DPO.replace("ARGV", repr(["align", *overrides(out)])), tmp_path / "marker",
                   tmp_path / "child.log")
    state = json.loads((out / "round_1" / "state.json").read_text())
    assert state["finished"] == ["generate", "score", "pairs", "sft"] and not (out / "round_1" / "policy").exists()
    generations = (out / "round_1" / "generations.jsonl").read_bytes()

    run_align(AlignConfig.load(None, overrides(out)))
    clean = tmp_path / "clean" / "round_1"
    assert (out / "round_1" / "generations.jsonl").read_bytes() == generations  # kept, not regenerated
    assert generations == (clean / "generations.jsonl").read_bytes()
    assert (out / "round_1" / "scores.jsonl").read_bytes() == (clean / "scores.jsonl").read_bytes()
    reference = load_file(str(clean / "policy" / "model.safetensors"))
    weights = load_file(str(out / "round_1" / "policy" / "model.safetensors"))
    for name, tensor in reference.items():
        torch.testing.assert_close(weights[name], tensor, atol=1e-6, rtol=1e-5)


@pytest.mark.slow
def test_align_resume_with_another_judge_or_setting_is_refused(
        tmp_path, tiny_policy, tiny_csrm, item_files):  # noqa: F811 - fixtures imported from test_align
    from csrm.alignment.align import AlignRun, run_align
    from csrm.alignment.config import AlignConfig

    out = tmp_path / "run"

    def cfg(**extra: str) -> AlignConfig:
        return AlignConfig.load(None, recipe_overrides(out, tiny_policy, tiny_csrm, item_files, rounds="1",
                                                       **{"eval.enabled": "false", **extra}))

    calls = []
    original = AlignRun.step_generate

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    AlignRun.step_generate = counting
    try:
        run_align(cfg())
        model, tok = tiny_encoder(max_length=192, seed=5)  # like tiny_csrm (all "complies"), other rewards
        with torch.no_grad():
            model.compliance_head.weight.zero_()
            model.compliance_head.bias.fill_(3.0)
        other_judge = save(model, tok, tmp_path / "judge2")
        with pytest.raises(InputError, match="field 'judge'.*--restart"):
            run_align(cfg(**{"judge.csrm": str(other_judge)}))
        with pytest.raises(InputError, match="field 'settings'"):
            run_align(cfg(**{"sampling.temperature": "0.5"}))
        run_align(cfg(**{"eval.enabled": "true"}))  # evaluation may be turned on later
        assert len(calls) == 1
        run_align(cfg(**{"judge.csrm": str(other_judge)}), restart=True)
        assert len(calls) == 2  # started over
    finally:
        AlignRun.step_generate = original
