"""``csrm train`` trains the rule family (``architecture: rule``): the dispatcher builds ``RuleJudgeArgs``, the
trainer writes a marked ``csrm train`` output that ``csrm.load`` scores with, and a field of another family's
config, a foreign non-empty output folder or a missing rules folder stop before anything trains, named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from rule_judge_fixtures import PHONE_RULE, tiny_backbone, write_dataset

import csrm
from csrm.app.train import main
from csrm.base.errors import InputError
from csrm.base.io import OUTPUT_MARKER
from csrm.base.paths import CONFIGS_DIR
from csrm.base.rule_text import format_rules
from csrm.base.score_types import ScoreItem
from csrm.model.rule.args import RuleJudgeArgs
from csrm.training.train import config_class, load_train_config

# a few dozen pairs, one epoch: the run takes seconds; what is learnt is test_rule_judge_load's business
TINY = {"architecture": "rule", "max_train_pairs": 64, "num_train_epochs": 1.0, "batch_size": 16,
        "max_length": 96, "rule_max_tokens": 24, "context_max_tokens": 16, "freeze_layers": 0,
        "calibration_items": 10, "threads": 1}


def tiny_config(tmp_path: Path, **extra) -> Path:
    path = tmp_path / "rule_tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY, "model_name_or_path": str(tiny_backbone(tmp_path / "tiny")), **extra}))
    return path


def test_csrm_train_trains_a_rule_judge_that_csrm_load_scores(tmp_path, capsys):
    data, out = write_dataset(tmp_path / "data"), tmp_path / "judge"
    config = tiny_config(tmp_path)
    assert main([str(config), f"dataset_path={data}", f"output_dir={out}"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["positives"] > 0 and printed["train_inputs"] >= 64
    marker = json.loads((out / OUTPUT_MARKER).read_text())
    assert marker["command"] == "train" and "rule_judge.json" in marker["files"]
    results = json.loads((out / "train_results.json").read_text())
    assert results["architecture"] == "rule" and results["train_inputs"] == printed["train_inputs"]
    assert yaml.safe_load((out / "train_config.yaml").read_text())["max_train_pairs"] == 64
    meta = json.loads((out / "rule_judge.json").read_text())
    assert meta["args"]["max_length"] == 96 and meta["args"]["architecture"] == "rule"
    scorer = csrm.load(out)
    assert type(scorer.predictor).__name__ == "RuleFamilyPredictor"
    rules = ["Do not discuss the weather.", PHONE_RULE]
    result, = scorer.score_items([ScoreItem(config=format_rules(rules), messages=[
        {"role": "user", "content": "How do I reach Sam?"}], response="Sam's number is 555-0199.")])
    assert 0.0 < result.p_comply < 1.0 and result.threshold == pytest.approx(meta["threshold"])
    assert result.evidence is not None and result.evidence.rule_text in rules and result.evidence.turn_index == 1
    # the folder is csrm train's own output now: a rerun may replace it (checked before anything trains)
    from csrm.training.train import check_train_output

    cfg, _ = load_train_config(config, [f"dataset_path={data}", f"output_dir={out}"])
    check_train_output(cfg)


def test_csrm_train_refuses_a_foreign_folder_and_a_missing_rules_folder(tmp_path, capsys):
    data, config = write_dataset(tmp_path / "data"), tiny_config(tmp_path)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert main([str(config), f"dataset_path={data}", f"output_dir={foreign}"]) == 2
    assert "output_dir" in capsys.readouterr().err and (foreign / "notes.txt").read_text() == "mine"
    assert main([str(config), f"output_dir={tmp_path / 'a'}"]) == 2
    assert "dataset_path" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main([str(config), f"dataset_path={tmp_path / 'empty'}", f"output_dir={tmp_path / 'b'}"]) == 2
    err = capsys.readouterr().err
    assert "dataset_path" in err and "train.jsonl" in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_dispatch_builds_the_rule_config_and_refuses_other_families_fields(tmp_path, capsys):
    assert config_class(None, ["architecture=rule"]) is RuleJudgeArgs
    shipped, raw = load_train_config(CONFIGS_DIR / "train" / "rule_minilm.yaml", ["dataset_path=x"])
    assert isinstance(shipped, RuleJudgeArgs) and raw["architecture"] == "rule"
    assert (shipped.max_length, shipped.max_train_pairs, shipped.num_train_epochs, shipped.learning_rate) == \
        (160, 12000, 2, 2e-4)
    rule_yaml = tmp_path / "rule.yaml"
    rule_yaml.write_text("architecture: rule\nreader_steps: 5\n")
    with pytest.raises(InputError) as err:
        load_train_config(rule_yaml)
    assert err.value.field == "reader_steps" and err.value.line == 2
    clause_yaml = tmp_path / "clause.yaml"
    clause_yaml.write_text("architecture: clause\ndataset_path: x\noutput_dir: y\nrule_max_tokens: 64\n")
    with pytest.raises(InputError) as err:
        load_train_config(clause_yaml)
    assert err.value.field == "rule_max_tokens"
    with pytest.raises(InputError) as err:  # an override into the wrong family names it too
        load_train_config(CONFIGS_DIR / "train" / "clause_minilm.yaml", ["window_chars=300"])
    assert err.value.field == "window_chars"
    with pytest.raises(SystemExit):
        main([str(CONFIGS_DIR / "train" / "rule_minilm.yaml"), "--help"])
    listed = capsys.readouterr().out
    assert all(name in listed for name in ("rule_max_tokens", "window_chars", "calibration_items", "overwrite"))


def test_csrm_export_copies_the_rule_judge_with_its_card_and_refuses_transformers(tmp_path, capsys):
    from csrm.app.export import main as export_main

    data, judge = write_dataset(tmp_path / "data"), tmp_path / "judge"
    assert main([str(tiny_config(tmp_path)), f"dataset_path={data}", f"output_dir={judge}"]) == 0
    out = tmp_path / "export"
    assert export_main([str(judge), str(out)]) == 0  # auto: the folder as is, for csrm.load
    card = (out / "README.md").read_text()
    assert "**rule judge** (research state)" in card and "numbered rule policies" in card
    assert "CoSA risk taxonomy" not in card
    assert csrm.load(out).score_items([ScoreItem(config=format_rules([PHONE_RULE]), messages=[],
                                                 response="Call 555-0199.")])[0].evidence is not None
    capsys.readouterr()
    assert export_main([str(judge), str(tmp_path / "export2"), "format=transformers"]) == 2
    assert "format" in capsys.readouterr().err and not (tmp_path / "export2").exists()


def test_training_returns_freed_heap_memory_every_step(tmp_path, monkeypatch):
    import csrm.model.rule.trainer as trainer

    calls = []
    monkeypatch.setattr(trainer, "release_freed_memory", lambda: calls.append(1) or True)
    data, out = write_dataset(tmp_path / "data"), tmp_path / "judge"
    assert main([str(tiny_config(tmp_path)), f"dataset_path={data}", f"output_dir={out}"]) == 0
    steps = json.loads((out / "train_results.json").read_text())["train_inputs"] // 16  # batch 16, one epoch
    assert len(calls) >= steps > 0  # one malloc_trim per optimisation step (csrm.base.memory)
