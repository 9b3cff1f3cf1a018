"""`csrm run`: the main job's stages run in order, write their outputs, and are reused only while their
fingerprint (settings, inputs, upstream stages) is unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from csrm.app.pipeline import Pipeline, load_pipeline_config
from csrm.base.errors import InputError
from csrm.base.paths import CONFIGS_DIR

TINY_TRAIN = ["max_steps=6", "eval_strategy=no", "save_strategy=no", "logging_steps=3"]


def tiny_recipe(tmp_path: Path, **extra) -> Path:
    recipe = {
        "name": "tiny",
        "output_dir": str(tmp_path / "run"),
        "augment": "configs/augment/seed.yaml",
        "train": "configs/train/tiny_test.yaml",
        "train_overrides": TINY_TRAIN,
        "bench": ["augmented"],
        **extra,
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


@pytest.mark.slow
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
    skipped = [line for line in logs if ": reused, same settings and inputs" in line]
    assert len(skipped) == 7, logs  # augment, train, calibrate, eval, and the blind train/calibrate/eval


@pytest.mark.slow
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


@pytest.mark.slow
def test_changed_settings_rerun_that_stage_and_every_later_one(tmp_path):
    out = tmp_path / "run"

    def run(**extra):
        logs: list[str] = []
        pipeline = Pipeline(load_pipeline_config(tiny_recipe(tmp_path, **extra)), log=logs.append)
        text = pipeline.run()
        return dict(pipeline.state.status), json.loads((out / "report.json").read_text()), text, logs

    status, _, _, _ = run()
    assert status == {"augment": "ran", "train": "ran", "calibrate": "ran", "eval csrm": "ran"}
    model_mtime = (out / "model/model.safetensors").stat().st_mtime_ns
    status, report, text, _ = run()  # nothing changed: everything is reused, nothing rewritten
    assert set(status.values()) == {"reused"} and "| train | reused |" in text
    assert report["stages"]["train"]["status"] == "reused"
    assert (out / "model/model.safetensors").stat().st_mtime_ns == model_mtime

    # a training setting changes: train and every later stage rerun, augment is reused; checkpoints written
    # under the old settings are not resumed from
    stale = out / "model-checkpoints" / "checkpoint-3"
    stale.mkdir(parents=True)
    (stale / "trainer_state.json").write_text("{}")
    status, report, text, logs = run(train_overrides=[*TINY_TRAIN, "learning_rate=5e-4"])
    assert status == {"augment": "reused", "train": "ran", "calibrate": "ran", "eval csrm": "ran"}
    assert any("rerun: changed settings.config" in line for line in logs if line.startswith("[csrm run] train")), logs
    assert "learning_rate: 0.0005" in (out / "model/train_config.yaml").read_text()
    assert (out / "model/model.safetensors").stat().st_mtime_ns != model_mtime
    assert not stale.exists()
    assert "| augment | reused |" in text and "| train | ran |" in text and "| eval csrm | ran |" in text
    n_test = report["benchmarks"]["augmented"]["csrm"]["n_test"]

    # an evaluation setting changes: only eval reruns, and the report shows the new numbers
    status, report, _, _ = run(train_overrides=[*TINY_TRAIN, "learning_rate=5e-4"], eval_limit=10)
    assert status == {"augment": "reused", "train": "reused", "calibrate": "reused", "eval csrm": "ran"}
    assert report["benchmarks"]["augmented"]["csrm"]["n_test"] <= 10 < n_test

    # calibration switched off: the temperature an earlier run fitted is removed, and eval reruns
    status, _, _, _ = run(train_overrides=[*TINY_TRAIN, "learning_rate=5e-4"], eval_limit=10, calibrate=False)
    assert status == {"augment": "reused", "train": "reused", "calibrate": "off", "eval csrm": "ran"}
    assert json.loads((out / "model/config.json").read_text())["temperature"] == 1.0
    assert not (out / "calibration.json").exists()

    # an augmentation setting changes: everything reruns
    status, _, _, _ = run(train_overrides=[*TINY_TRAIN, "learning_rate=5e-4"], eval_limit=10, calibrate=False,
                          augment_overrides=["seed=1"])
    assert status == {"augment": "ran", "train": "ran", "calibrate": "off", "eval csrm": "ran"}


def test_fingerprint_covers_input_files_and_upstream(tmp_path):
    from csrm.app.run_state import RunState, StageSpec

    data = tmp_path / "corpus.jsonl"
    data.write_text('{"prompt": "a"}\n')
    first = StageSpec("augment", {"seed": 0}, inputs=[data])
    assert StageSpec("augment", {"seed": 0}, inputs=[data]).fingerprint == first.fingerprint
    state = RunState(tmp_path)
    state.finish(first, 1.0)
    output = tmp_path / "out"
    output.mkdir()
    assert RunState(tmp_path).reusable(first, output) == (True, [])
    data.write_text('{"prompt": "b"}\n')  # same settings, edited data
    edited = StageSpec("augment", {"seed": 0}, inputs=[data])
    assert RunState(tmp_path).reusable(edited, output) == (False, [f"inputs.{data}"])
    downstream = StageSpec("train", {"lr": 1}, upstream={"augment": first.fingerprint})
    assert StageSpec("train", {"lr": 1}, upstream={"augment": edited.fingerprint}).fingerprint != downstream.fingerprint
    assert RunState(tmp_path).reusable(downstream, output) == (False, ["no record"])


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
