"""``csrm run`` from anywhere and honest about it: recipe files resolve against the recipe's folder, the data
folder default works outside a checkout, a recipe whose data is missing stops naming ``data_dir``, and the
default recipe's report fits the temperature on rows disjoint from every item it reports (checked by id)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from csrm.app.pipeline import Pipeline, check_recipe, load_pipeline_config
from csrm.base import paths
from csrm.base.errors import InputError
from csrm.base.paths import CONFIGS_DIR, data_dir, recipe_path

TINY_TRAIN = ["backbone_config={model_type: bert, hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, "
              "intermediate_size: 64}", "reader_steps=20", "num_train_epochs=2", "disable_tqdm=true"]


def copy_configs(root: Path) -> Path:
    """A stand-in clone: ``root/configs/{pipeline,augment,train}`` copied from this checkout."""
    for folder in ("pipeline", "augment", "train"):
        shutil.copytree(CONFIGS_DIR / folder, root / "configs" / folder)
    return root / "configs"


def test_recipe_files_resolve_against_the_recipe_folder_from_anywhere(tmp_path, monkeypatch):
    configs = copy_configs(tmp_path / "clone")
    (configs / "augment" / "seed.yaml").write_text((configs / "augment" / "seed.yaml").read_text()
                                                   .replace("max_configs_per_record: 4", "max_configs_per_record: 2"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_pipeline_config(configs / "pipeline" / "default.yaml")
    from csrm.app.pipeline import resolve

    # configs/augment/seed.yaml inside <clone>/configs/pipeline/default.yaml: the clone's copy, not this checkout's
    assert resolve(cfg.augment, cfg) == configs / "augment" / "seed.yaml"
    assert resolve(cfg.train, cfg) == configs / "train" / "clause_minilm.yaml"
    # a sibling file named relative to the recipe's own folder
    (configs / "pipeline" / "mine.yaml").write_text(yaml.safe_dump({"name": "mine", "augment": "../augment/seed.yaml",
                                                                    "train": "../train/clause_minilm.yaml"}))
    mine = load_pipeline_config(configs / "pipeline" / "mine.yaml")
    assert resolve(mine.augment, mine).resolve() == (configs / "augment" / "seed.yaml").resolve()
    check_recipe(mine)
    # an augmentation recipe's own relative paths: its folder first
    (configs / "augment" / "rows.jsonl").write_text("")
    import augmentation
    from augmentation.recipe import resolve_path

    recipe = augmentation.load_recipe(configs / "augment" / "seed.yaml")
    assert resolve_path("rows.jsonl", recipe) == configs / "augment" / "rows.jsonl"
    assert recipe_path("nowhere.yaml", configs / "augment") == configs / "augment" / "nowhere.yaml"


def test_data_dir_default_outside_a_checkout(tmp_path, monkeypatch):
    monkeypatch.delenv("CSRM_DATA_DIR", raising=False)
    assert data_dir() == paths.PROJECT_ROOT.parent / "shared" / "data"  # a checkout: beside it, as before
    site = tmp_path / "site-packages"
    site.mkdir()
    monkeypatch.setattr(paths, "PROJECT_ROOT", site)  # what an installed wheel sees
    clone = tmp_path / "clone"
    (clone / "csrm").mkdir(parents=True)
    (clone / "csrm" / "__init__.py").write_text("")
    (clone / "pyproject.toml").write_text("")
    (clone / "configs" / "pipeline").mkdir(parents=True)
    assert data_dir(clone / "configs" / "pipeline") == tmp_path / "shared" / "data"  # the recipe's clone
    assert data_dir(tmp_path / "loose") == Path("~/.cache/csrm/data").expanduser()
    assert data_dir() == Path("~/.cache/csrm/data").expanduser()
    monkeypatch.setenv("CSRM_DATA_DIR", str(tmp_path / "mine"))
    assert data_dir(clone) == tmp_path / "mine"


def test_recipe_needing_missing_shared_data_stops_naming_data_dir(tmp_path):
    recipe = tmp_path / "needs.yaml"
    recipe.write_text(yaml.safe_dump({"name": "needs", "augment": str(CONFIGS_DIR / "augment" / "shared.yaml"),
                                      "train": str(CONFIGS_DIR / "train" / "clause_minilm.yaml"),
                                      "data_dir": str(tmp_path / "empty"), "output_dir": str(tmp_path / "run")}))
    with pytest.raises(InputError) as err:
        Pipeline(load_pipeline_config(recipe), log=lambda _: None).run()
    assert err.value.field == "data_dir" and str(tmp_path / "empty") in str(err.value)
    assert not (tmp_path / "run" / "data").exists()  # before any stage


@pytest.mark.slow
def test_default_recipe_calibrates_on_rows_disjoint_from_the_reported_test_slice(tmp_path, monkeypatch):
    monkeypatch.setenv("CSRM_DATA_DIR", str(tmp_path / "no_shared_data"))
    out = tmp_path / "run"
    cfg = load_pipeline_config(CONFIGS_DIR / "pipeline" / "default.yaml",
                               [f"output_dir={out}", "train_overrides=[" + ", ".join(
                                   f'"{o}"' for o in TINY_TRAIN) + "]"])
    text = Pipeline(cfg, log=lambda _: None).run()
    calibration = json.loads((out / "calibration.json").read_text())
    predictions = [json.loads(line) for line in (out / "eval" / "csrm" / "predictions.jsonl").open()]
    test_ids = {p["item_id"] for p in predictions if p["split"] == "test"}
    dev_ids = {p["item_id"] for p in predictions if p["split"] == "dev"}
    fit_ids = set(calibration["example_ids"])
    validation = {json.loads(line)["example_id"] for line in (out / "data" / "examples.validation.jsonl").open()}
    assert test_ids and fit_ids and len(fit_ids) == calibration["n"]
    assert not fit_ids & test_ids  # the temperature never saw a reported item
    assert fit_ids == dev_ids and fit_ids <= validation  # it saw the dev slice eval tunes on, all of it
    assert "dev slice" in calibration["fit_on"] and calibration["fit_on"] in text
    # applied only when it does not raise ECE on those rows, and the report says which
    worse = calibration["after"]["ece"] > calibration["before"]["ece"]
    assert calibration["applied"] is (not worse)
    stored = json.loads((out / "model" / "config.json").read_text())["temperature"]
    assert stored == pytest.approx(calibration["temperature"])
    assert ("**Not applied**" in text) is worse and ("Applied:" in text) is (not worse)
    # no placeholder, real paths, measured times, modes named as modes, skipped files named
    assert "<model>" not in text and str(out / "eval" / "csrm" / "report.md") in text
    timings = json.loads((out / "timings.json").read_text())
    assert f"train {timings['train']:.0f} s" in text and "under a minute" not in text
    assert "AUROC per augmentation mode" in text and "per config:" not in text
    assert "Trained without `distractor_rules`" in text and not re.search(r"\bnan\b", text, re.IGNORECASE)


def test_calibration_that_worsens_ece_is_not_applied(tmp_path, monkeypatch):
    from csrm.training import calibration as cal

    def fake_metrics(logits, labels, temperature):  # the fitted temperature "raises" ECE
        t = float(np.mean(temperature))
        return {"nll": 0.5, "ece": 0.08 if t == 1.0 else 0.09, "brier": 0.2}

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "csrm_clause", "temperature": 1.0,
                                                   "request_temperature": None}))
    z = np.array([3.0, -3.0, 2.0, -2.0, 4.0, 1.0])
    monkeypatch.setattr(cal, "check_model_dir", lambda _: None)
    monkeypatch.setattr(cal, "load_augmented", lambda *a, **k: {"examples": {"validation": list(range(6))}})
    monkeypatch.setattr(cal, "_clause_logits", lambda *a, **k: (z, np.array([1, 0, 0, 1, 1, 0.0]),
                                                                 np.zeros(6, dtype=bool), (1.0, None)))
    monkeypatch.setattr(cal, "calibration_metrics", fake_metrics)
    report = cal.calibrate(model, tmp_path / "data", output_dir=tmp_path / "cal", progress=False)
    assert report["applied"] is False and report["written"] is False
    assert report["temperature"] == 1.0 and report["fitted_temperature"] != 1.0
    assert "raises ECE" in report["not_applied_reason"]
    assert json.loads((model / "config.json").read_text())["temperature"] == 1.0
    report = cal.calibrate(model, tmp_path / "data", output_dir=tmp_path / "cal", progress=False, keep_if_worse=True)
    assert report["applied"] is True
    assert json.loads((model / "config.json").read_text())["temperature"] == pytest.approx(report["temperature"])
