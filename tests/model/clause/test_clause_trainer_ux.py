"""The clause trainer behaves like a Trainer (progress bars per stage, ``logging_steps``, ``report_to: wandb``
checked in the offline run's own files), and records what it trained without."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from wandb_offline import read_offline_run

import augmentation
from csrm.app import train as train_cli
from csrm.base.errors import InputError
from csrm.base.paths import CONFIGS_DIR
from csrm.training.train import load_train_config

CLAUSE_YAML = CONFIGS_DIR / "train" / "clause_minilm.yaml"
SEED_RECIPE = CONFIGS_DIR / "augment" / "seed.yaml"
TINY = ["backbone_config={model_type: bert, hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, "
        "intermediate_size: 64}", "reader_steps=20", "reader_batch_size=64", "num_train_epochs=2",
        "max_train_examples=200", "per_device_train_batch_size=32"]


@pytest.fixture(scope="module")
def seed_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ux_seed") / "augment"
    augmentation.run(augmentation.load_recipe(SEED_RECIPE, ["progress=false"]), output_dir=out)
    return out


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch) -> Path:
    """An offline wandb under a fresh folder, its process-wide state torn down before and after."""
    import wandb

    wandb.teardown()
    root = tmp_path / "wandb_root"
    root.mkdir()
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(root))
    monkeypatch.setenv("WANDB_PROJECT", "csrm-tests")
    yield root
    wandb.teardown()


@pytest.mark.slow
def test_csrm_train_clause_reports_to_wandb_offline_with_progress_bars(seed_data, tmp_path, offline_wandb,
                                                                        monkeypatch, capfd):
    empty = tmp_path / "no_shared_data"
    empty.mkdir()
    monkeypatch.setenv("CSRM_DATA_DIR", str(empty))
    out = tmp_path / "model"
    assert train_cli.main([str(CLAUSE_YAML), f"dataset_path={seed_data}", f"output_dir={out}", *TINY,
                           "report_to=wandb", "logging_steps=4"]) == 0
    err = capfd.readouterr().err
    for stage in ("encoding", "reader", "judge heads"):  # one tqdm bar per stage, run to its end
        assert f"{stage}: 100%" in err, stage
    results = json.loads((out / "train_results.json").read_text())
    runs = list(offline_wandb.glob("wandb/offline-run-*"))
    assert len(runs) == 1 and results["wandb_run_dir"] == str(runs[0])
    run = read_offline_run(runs[0])
    assert run["job_type"] == "train" and run["name"] == "model"
    # losses every logging_steps global steps (reader + judge), plus each epoch's and stage's last step
    steps = [e["global_step"] for e in results["log"]]
    assert steps == sorted(steps) and {4, 8, 12, 16, 20} <= set(steps)
    assert run["history"]["train/loss"] == pytest.approx([e["loss"] for e in results["log"]])
    assert run["history"]["train/global_step"][:len(steps)] == steps
    assert "train/judge_bce" in run["history"] and "train/reader_loss" in run["history"]
    # validation metrics and timings, equal to train_results.json's
    assert run["summary"]["eval/auroc"] == pytest.approx(results["eval"]["eval_auroc"])
    assert run["summary"]["eval/pair_accuracy"] == pytest.approx(results["eval"]["eval_pair_accuracy"])
    for key in ("feature_seconds", "reader_seconds", "judge_seconds", "train_seconds"):
        assert run["summary"][f"train/{key}"] == pytest.approx(results[key])
    # the optional shared files it trained without are named, not only warned about
    assert set(results["skipped"]) == {"distractor_rules", "pseudo_label_prompts"}
    assert str(empty) in results["skipped"]["distractor_rules"]


def test_report_to_values_and_logging_steps_are_checked(seed_data, tmp_path):
    base = [f"dataset_path={seed_data}", f"output_dir={tmp_path / 'm'}"]
    cfg, _ = load_train_config(CLAUSE_YAML, [*base, "report_to=wandb", "logging_steps=3"])
    assert cfg.report_to == "wandb" and cfg.logging_steps == 3 and cfg.disable_tqdm is False
    with pytest.raises(InputError) as err:
        load_train_config(CLAUSE_YAML, [*base, "report_to=tensorboard"])
    assert err.value.field == "report_to" and "tensorboard" in str(err.value)
    with pytest.raises(InputError) as err:
        load_train_config(CLAUSE_YAML, [*base, "logging_steps=0"])
    assert err.value.field == "logging_steps"


def test_no_wandb_run_unless_asked(seed_data, tmp_path, offline_wandb):
    out = tmp_path / "model"
    assert train_cli.main([str(CLAUSE_YAML), f"dataset_path={seed_data}", f"output_dir={out}", *TINY,
                           "reader_steps=2", "num_train_epochs=1", "disable_tqdm=true"]) == 0
    assert "wandb_run_dir" not in json.loads((out / "train_results.json").read_text())
    assert not list(offline_wandb.glob("wandb/offline-run-*"))
