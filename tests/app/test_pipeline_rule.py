"""`csrm run` with a rule judge (issue #28): the augment stage writes the rule data too, the rule judge trains
and is evaluated beside the CSRM, the report carries its row and the rule-reading block, a rerun
reuses its stages, and a recipe that would train it without rule data stops before any stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from csrm.app.pipeline import Pipeline, load_pipeline_config
from csrm.base.errors import InputError
from csrm.base.paths import CONFIGS_DIR, default_backbone

TINY_TRAIN = ["max_steps=6", "eval_strategy=no", "save_strategy=no", "logging_steps=3"]
TINY_RULE = {"architecture": "rule", "max_train_pairs": 64, "num_train_epochs": 1.0, "batch_size": 16,
             "max_length": 96, "rule_max_tokens": 24, "context_max_tokens": 16, "freeze_layers": 0,
             "calibration_items": 10, "threads": 1, "top_k": 4}


def tiny_backbone(root: Path) -> Path:
    """A 2-layer, 32-wide BERT (random weights, built from its config) with the MiniLM tokenizer."""
    tok = AutoTokenizer.from_pretrained(default_backbone())
    config = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512, num_labels=1,
                        problem_type="multi_label_classification")
    BertForSequenceClassification(config).save_pretrained(str(root))
    tok.save_pretrained(str(root))
    return root


def recipe(tmp_path: Path, data: Path, *, rules: bool = True, **extra) -> Path:
    augment = {"seed": 0, "sources": [{"type": "seed"}],
               "rules": {"enabled": rules, "families": ["disclosure", "obligation"], "scaffolds_per_family": 20,
                         "max_rules": 12, "moderation": ""}}
    (tmp_path / "augment.yaml").write_text(yaml.safe_dump(augment))
    (tmp_path / "rule.yaml").write_text(yaml.safe_dump(
        {**TINY_RULE, "model_name_or_path": str(tmp_path / "tiny")}))
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump({"architecture": "policy", "max_units": 200}))
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({
        "name": "tiny-rules", "output_dir": str(tmp_path / "run"), "augment": str(tmp_path / "augment.yaml"),
        "train": str(CONFIGS_DIR / "train" / "tiny_test.yaml"), "train_overrides": TINY_TRAIN,
        "rule_judge": str(tmp_path / "rule.yaml"), "policy_judge": str(tmp_path / "policy.yaml"),
        "bench": ["dynabench", "augmented"], "eval_limit": 8,
        "data_dir": str(data), **extra}))
    return path


@pytest.mark.slow
def test_pipeline_trains_reports_and_reuses_the_rule_judge(tmp_path, shared_data):
    tiny_backbone(tmp_path / "tiny")
    logs: list[str] = []
    text = Pipeline(load_pipeline_config(recipe(tmp_path, shared_data)), log=logs.append).run()
    out = tmp_path / "run"
    for name in ("train.jsonl", "dev.jsonl", "test.jsonl"):
        assert (out / "data" / "rules" / name).stat().st_size > 0, name
    assert json.loads((out / "model_rule" / "config.json").read_text())["model_type"] == "csrm_rule"
    report = json.loads((out / "report.json").read_text())
    rows = report["benchmarks"]["dynabench"]
    labels = {"csrm", "rule_judge", "policy_judge"}
    assert set(rows) == labels and set(report["benchmarks"]["augmented"]) == labels
    assert json.loads((out / "model_policy" / "config.json").read_text())["model_type"] == "csrm_policy"
    assert "## Policy judge" in text and "| policy_judge |" in text
    block = rows["rule_judge"]["extra"]["rule_reading"]
    assert block["status"] == "ok" and block["columns"]["model"]["swap"]["n"] > 0
    assert report["rule_judge_training"]["positives"] > 0
    assert report["stages"]["train rule judge"]["status"] == "ran"
    assert "## Rule judge" in text and "| rule_judge |" in text
    reading = text[text.index("### Rule reading"):]
    assert "| rule_judge |" in reading.split("\n\n")[2]  # its own row in the rule-reading table
    # the one augment stage fingerprints the rules section: a second run reuses every stage, the rule judge's too
    logs.clear()
    Pipeline(load_pipeline_config(recipe(tmp_path, shared_data)), log=logs.append).run()
    reused = [line.split(":")[0].removeprefix("[csrm run] ") for line in logs if ": reused, same settings" in line]
    assert {"augment", "train rule judge", "eval rule_judge", "compose policy judge", "eval policy_judge"} <= set(
        reused), logs
    # a changed rule-judge setting reruns that stage and its eval only
    logs.clear()
    Pipeline(load_pipeline_config(recipe(tmp_path, shared_data, rule_judge_overrides=["max_train_pairs=48"])),
             log=logs.append).run()
    ran = [line for line in logs if "rerun: changed" in line]
    assert any(line.startswith("[csrm run] train rule judge ... (rerun: changed settings.config") for line in ran), ran
    assert any(line.startswith("[csrm run] eval rule_judge ...") for line in ran), ran
    assert any(line.startswith("[csrm run] compose policy judge ...") for line in ran), ran  # it holds the new judge
    assert not any(line.startswith("[csrm run] train ...") for line in logs)


def test_rule_judge_without_rule_data_or_with_another_family_is_refused_first(tmp_path):
    path = recipe(tmp_path, tmp_path / "no_data", rules=False)
    with pytest.raises(InputError) as err:
        Pipeline(load_pipeline_config(path), log=lambda _: None).run()
    assert err.value.field == "rules.enabled" and "augment.yaml" in str(err.value)

    def with_rules(path: Path) -> Path:  # rules on, reading nothing from the (absent) data folder
        (tmp_path / "augment.yaml").write_text(yaml.safe_dump({"sources": [{"type": "seed"}], "rules": {
            "enabled": True, "ifeval_rules": "", "moderation": ""}}))
        return path

    path = with_rules(recipe(tmp_path, tmp_path / "no_data", rule_judge=str(CONFIGS_DIR / "train" / "clause_minilm.yaml")))
    with pytest.raises(InputError) as err:
        Pipeline(load_pipeline_config(path), log=lambda _: None).run()
    assert err.value.field == "rule_judge" and "architecture" in str(err.value)
    path = with_rules(recipe(tmp_path, tmp_path / "no_data", rule_judge_overrides=["max_pairs=3"]))
    with pytest.raises(InputError) as err:  # a misspelled override of the rule judge's config, named
        Pipeline(load_pipeline_config(path), log=lambda _: None).run()
    assert err.value.field == "max_pairs" and err.value.path == "recipe rule_judge_overrides"
    path = with_rules(recipe(tmp_path, tmp_path / "no_data", rule_judge=""))
    with pytest.raises(InputError) as err:  # a policy judge with no rule judge to compose
        Pipeline(load_pipeline_config(path), log=lambda _: None).run()
    assert err.value.field == "policy_judge"
    assert not (tmp_path / "run").exists()


def test_shared_recipe_trains_the_rule_judge_and_default_does_not():
    shared = load_pipeline_config(CONFIGS_DIR / "pipeline" / "shared.yaml")
    assert shared.rule_judge.endswith("rule_minilm.yaml") and shared.policy_judge.endswith("policy.yaml")
    from augmentation.recipe import load_recipe

    assert load_recipe(CONFIGS_DIR / "augment" / "shared.yaml").rules.enabled
    assert load_pipeline_config(CONFIGS_DIR / "pipeline" / "default.yaml").rule_judge == ""
