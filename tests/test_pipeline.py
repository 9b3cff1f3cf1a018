"""`csrm run`: the main job's stages run in order, write their outputs, and are skipped when done."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from csrm.errors import InputError
from csrm.paths import CONFIGS_DIR
from csrm.pipeline import Pipeline, load_pipeline_config


@pytest.fixture(autouse=True)
def single_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_recipe(tmp_path: Path, **extra) -> Path:
    recipe = {
        "name": "tiny",
        "out_dir": str(tmp_path / "run"),
        "augment": "configs/augment/seed.yaml",
        "train": "configs/train/tiny_test.yaml",
        "train_overrides": ["max_steps=6", "eval_strategy=no", "save_strategy=no", "logging_steps=3"],
        "bench": ["augmented"],
        **extra,
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


def test_pipeline_runs_every_stage_then_skips_them(tmp_path):
    logs: list[str] = []
    cfg = load_pipeline_config(tiny_recipe(tmp_path, baselines=["config_blind"]))
    text = Pipeline(cfg, log=logs.append).run()
    out = tmp_path / "run"
    for path in ("data/manifest.json", "model/config.json", "model/model.safetensors", "calibration.json",
                 "model_blind/config.json", "eval/csrm/report.json", "eval/config_blind/report.json",
                 "report.md", "report.json"):
        assert (out / path).is_file(), path
    # the temperature fitted by the calibrate stage is stored with the model
    calibration = json.loads((out / "calibration.json").read_text())
    assert json.loads((out / "model/config.json").read_text())["temperature"] == pytest.approx(
        calibration["temperature"])
    report = json.loads((out / "report.json").read_text())
    rows = report["benchmarks"]["augmented"]
    assert set(rows) == {"csrm", "config_blind"}
    assert rows["csrm"]["n_test"] > 50
    assert "| csrm |" in text and "| config_blind |" in text
    blind_eval = json.loads((out / "eval/config_blind/report.json").read_text())
    assert blind_eval["blind"] is True

    logs.clear()
    Pipeline(load_pipeline_config(tiny_recipe(tmp_path, baselines=["config_blind"])), log=logs.append).run()
    skipped = [line for line in logs if "done already" in line]
    assert len(skipped) == 7, logs  # augment, train, calibrate, eval, and the blind train/calibrate/eval


def test_pipeline_resumes_at_the_first_unfinished_stage(tmp_path, monkeypatch):
    cfg = load_pipeline_config(tiny_recipe(tmp_path, calibrate=False))

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Pipeline, "evaluate", killed)  # the first run dies in its eval stage
    with pytest.raises(KeyboardInterrupt):
        Pipeline(cfg, log=lambda _: None).run()
    monkeypatch.undo()
    out = tmp_path / "run"
    assert not (out / "eval").exists()
    assert set(json.loads((out / "timings.json").read_text())) == {"augment", "train"}
    manifest_mtime = (out / "data/manifest.json").stat().st_mtime_ns
    model_mtime = (out / "model/config.json").stat().st_mtime_ns
    logs: list[str] = []
    text = Pipeline(load_pipeline_config(tiny_recipe(tmp_path, calibrate=False)), log=logs.append).run()
    assert (out / "eval/csrm/report.json").is_file()
    assert (out / "data/manifest.json").stat().st_mtime_ns == manifest_mtime
    assert (out / "model/config.json").stat().st_mtime_ns == model_mtime
    assert any(line.startswith("[csrm run] eval csrm ...") for line in logs)
    timings = json.loads((out / "timings.json").read_text())
    assert set(timings) == {"augment", "train", "eval csrm"}  # the first run's stages are still reported
    assert f"all stages {sum(timings.values()):.0f} s" in text


def test_bad_recipe_fails_before_any_work_naming_the_key(tmp_path):
    path = tiny_recipe(tmp_path, epochs=3)
    with pytest.raises(InputError, match="epochs"):
        load_pipeline_config(path)
    path = tiny_recipe(tmp_path, baselines=["gpt-judge"])
    with pytest.raises(InputError, match="baselines"):
        load_pipeline_config(path)
    path = tiny_recipe(tmp_path, calibrate="yes")
    with pytest.raises(InputError, match="calibrate"):
        load_pipeline_config(path)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", sorted(p.name for p in (CONFIGS_DIR / "pipeline").glob("*.yaml")))
def test_shipped_pipeline_recipes_load(name):
    cfg = load_pipeline_config(CONFIGS_DIR / "pipeline" / name)
    assert cfg.augment and cfg.train
