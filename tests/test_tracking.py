"""Results where people look: calibration, evaluation and CoSA-Score go to wandb (checked in the offline run's
own files), reliability diagrams show bin counts, and evaluation/calibration show tqdm progress bars."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from fixtures.train.synthetic import write_dataset
from scoring_fixtures import CONFIGS, PROMPTS, RESPONSES
from wandb_offline import read_offline_run

from csrm.base.plots import reliability_figure
from csrm.base.tracking import flatten, wants_wandb
from csrm.training.calibration import calibrate


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch) -> Path:
    """An offline wandb writing under a fresh folder; wandb's process-wide state (which caches the settings of
    the first run in a process) is torn down before and after, so other tests' runs cannot leak in or out."""
    import wandb

    wandb.teardown()
    root = tmp_path / "wandb_root"
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(root))
    monkeypatch.setenv("WANDB_PROJECT", "csrm-tests")
    root.mkdir()
    yield root
    wandb.teardown()


def only_run(root: Path) -> Path:
    runs = list(root.glob("wandb/offline-run-*"))
    assert len(runs) == 1, runs
    return runs[0]


def test_report_to_parsing_and_flattening():
    assert wants_wandb("wandb") and wants_wandb(["tensorboard", "wandb"]) and wants_wandb("all")
    assert not wants_wandb("none") and not wants_wandb(None) and not wants_wandb([])
    assert flatten({"a": {"b": 1, "c": float("nan"), "d": True, "e": "text"}}, "job") == {"job/a/b": 1.0,
                                                                                       "job/a/d": 1.0}


def test_reliability_figure_shows_bin_counts():
    rng = np.random.default_rng(0)
    probs = np.concatenate([rng.uniform(0.0, 0.1, 50), [0.55], rng.uniform(0.9, 1.0, 20)])
    labels = (rng.random(len(probs)) < probs).astype(int)
    fig = reliability_figure({"model": (labels, probs)}, n_bins=10)
    curve, hist = fig.axes
    heights = [int(p.get_height()) for p in hist.patches]
    assert heights == np.bincount(np.minimum((probs * 10).astype(int), 9), minlength=10).tolist()
    texts = sorted(t.get_text() for t in curve.texts)
    assert texts == sorted(["n=50", "n=1", "n=20"])  # the lone middle item is labelled as one item


@pytest.mark.slow
def test_calibration_logs_metrics_bins_and_diagram_to_wandb(tmp_path, encoder_model_dir, offline_wandb, capfd):
    data = write_dataset(tmp_path / "data", n_train=10, n_validation=80)
    report = calibrate(encoder_model_dir, data, output_dir=tmp_path / "cal", write=False, report_to="wandb", batch_tokens=2048)
    assert "calibration logits" in capfd.readouterr().err  # tqdm bar
    assert sum(b["count"] for b in report["bins"]) == report["n"] == 80
    run = read_offline_run(only_run(offline_wandb))
    assert report["wandb_run_dir"] == str(only_run(offline_wandb))
    assert run["job_type"] == "calibration"
    assert run["history"]["calibration/after/ece"] == [pytest.approx(report["after"]["ece"])]
    assert run["history"]["calibration/temperature"] == [pytest.approx(report["temperature"])]
    assert run["summary"]["calibration/before/brier"] == pytest.approx(report["before"]["brier"])
    assert any(f.startswith("media/images/calibration/reliability") for f in run["files"])
    table = next(f for f in run["files"] if f.startswith("media/table/calibration/bins"))
    rows = json.loads((only_run(offline_wandb) / "files" / table).read_text())["data"]
    assert [r[2] for r in rows] == [b["count"] for b in report["bins"]]


def test_no_wandb_run_unless_asked(tmp_path, encoder_model_dir, offline_wandb):
    data = write_dataset(tmp_path / "data", n_train=10, n_validation=20)
    report = calibrate(encoder_model_dir, data, output_dir=tmp_path / "cal", write=False, progress=False)
    assert "wandb_run_dir" not in report and not list(offline_wandb.glob("wandb/offline-run-*"))


def test_csrm_eval_logs_to_wandb_with_progress_bars(tmp_path, encoder_model_dir, eval_fixtures, offline_wandb, capfd):
    from csrm.app.eval import main

    out = tmp_path / "eval"
    assert main([str(encoder_model_dir), "--bench", "cosapien", "--data-dir", str(eval_fixtures), "--no-hub",
                 "--output-dir", str(out), "--report-to", "wandb"]) == 0
    assert "scoring cosapien: 100%" in capfd.readouterr().err  # a tqdm bar, not a hand-written counter
    report = json.loads((out / "report.json").read_text())
    stored = report["benchmarks"]["cosapien"]["views"]["headline"]["overall"]["stored"]
    run = read_offline_run(only_run(offline_wandb))
    assert run["job_type"] == "eval"
    assert run["summary"]["eval/cosapien/headline/stored/f1"] == pytest.approx(stored["f1"])
    assert run["summary"]["eval/cosapien/headline/n_test"] == report["benchmarks"]["cosapien"]["views"][
        "headline"]["n_test"]
    assert any(f.startswith("media/images/eval/reliability") for f in run["files"])
    assert any(f.startswith("media/table/eval/per_config") for f in run["files"])


def test_cosa_score_logs_to_wandb(tmp_path, encoder_model_dir, offline_wandb):
    from csrm.alignment.align import AlignRun
    from csrm.alignment.cosa_score import HeldOutItem, evaluate_answers
    from csrm.scoring.scorer import load

    items = [HeldOutItem(CONFIGS[i % 2], [{"role": "user", "content": PROMPTS[i % 3]}], f"c{i % 2}", f"p{i}", f"i{i}")
             for i in range(6)]
    result = evaluate_answers(load(encoder_model_dir), items, [RESPONSES[i % 4] for i in range(6)])
    fake = SimpleNamespace(cfg=SimpleNamespace(report_to="wandb", to_dict=dict), out=tmp_path / "align",
                           eval_items=[{"config_id": f"c{k}", "config_name": f"cfg{k}"} for k in range(2)])
    folder = tmp_path / "align" / "round_1"
    folder.mkdir(parents=True)
    AlignRun._log_cosa(fake, folder, result["metrics"])
    run = read_offline_run(only_run(offline_wandb))
    assert run["job_type"] == "cosa_score"
    overall = result["metrics"]["overall"]
    assert run["summary"]["cosa_score/round_1/cosa_score"] == pytest.approx(overall["cosa_score"])
    assert run["summary"]["cosa_score/round_1/violation_rate"] == pytest.approx(overall["violation_rate"])
    assert (folder / "cosa_by_config.png").is_file()
    assert any(f.startswith("media/images/cosa_score/by_config") for f in run["files"])


@pytest.mark.slow
def test_evaluation_during_training_shows_a_progress_bar(tmp_path, capfd):
    from csrm.base.paths import CONFIGS_DIR
    from csrm.training.train import load_train_config, run_training

    data = write_dataset(tmp_path / "data", n_train=40, n_validation=40)
    config, _ = load_train_config(CONFIGS_DIR / "train" / "tiny_test.yaml", [], dataset_path=str(data),
                                  output_dir=str(tmp_path / "model"), max_steps=2, eval_strategy="steps",
                                  eval_steps=2, save_strategy="no", disable_tqdm=False)
    summary = run_training(config)
    assert "eval_auroc" in summary["eval"]
    assert "evaluating" in capfd.readouterr().err


@pytest.mark.slow
def test_csrm_run_logs_every_stage_to_wandb(tmp_path, offline_wandb):
    import yaml

    from csrm.app.pipeline import Pipeline, load_pipeline_config

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "tiny", "output_dir": str(tmp_path / "run"), "augment": "configs/augment/seed.yaml",
        "train": "configs/train/tiny_test.yaml", "bench": ["augmented"], "eval_limit": 20,
        "train_overrides": ["max_steps=2", "eval_strategy=no", "save_strategy=no", "logging_steps=1"]}))
    Pipeline(load_pipeline_config(recipe, ["report_to=wandb"]), log=lambda _: None).run()
    runs = [read_offline_run(p) for p in sorted(offline_wandb.glob("wandb/offline-run-*"))]
    by_job = {r["job_type"]: r for r in runs}
    assert {"calibration", "eval"} <= set(by_job) and len(runs) == 3  # + the training run (transformers)
    train_run = next(r for r in runs if r["job_type"] not in {"calibration", "eval"})
    assert "train/loss" in train_run["history"]
    assert "eval/augmented/headline/stored/auroc" in by_job["eval"]["summary"]
    # logging is not a setting: switching it off reuses every stage
    pipeline = Pipeline(load_pipeline_config(recipe), log=lambda _: None)
    pipeline.run()
    assert set(pipeline.state.status.values()) == {"reused"}
