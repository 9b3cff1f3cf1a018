"""The policy judge (csrm.model.policy): the router's split of a policy, and a judge composed from a tiny clause
reader and a tiny rule judge behind ``csrm.load``: a category config scores exactly as the category reader scores
it, a rule policy exactly as the rule judge, a mixed policy by both (product, sum, the smaller cut, the rule judge's
evidence with the policy's own rule numbers); the options and commands it has no use for are refused by name."""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pytest
import torch
import transformers
from rule_judge_fixtures import PHONE_RULE, tiny_backbone, write_dataset
from transformers import AutoTokenizer, BertForSequenceClassification

import csrm
from csrm.base.config import build
from csrm.base.errors import InputError
from csrm.base.paths import resolve_model_name
from csrm.base.rule_text import format_rules
from csrm.base.safety_config import SafetyConfig
from csrm.base.score_types import ScoreItem
from csrm.model.clause.modeling import ClauseCSRMModel
from csrm.model.policy.args import PolicyJudgeArgs
from csrm.model.policy.predictor import PolicyPredictor
from csrm.model.policy.router import CATEGORY, MIXED, RULES, Router, fit_router, policy_units
from csrm.model.policy.trainer import train
from csrm.model.rule.aggregation import Calibration
from csrm.model.rule.args import RuleJudgeArgs
from csrm.model.rule.modeling import PairEncoder
from csrm.model.rule.predictor import save as save_rule_judge

ALLOWS = [{"Violence": 3}, {"Violence": 1, "Privacy Violations": 2}, {}, {"Financial Crime and Theft": 2},
          {"Weapons, Explosives, Arson, and Illegal Firearm Transactions": 3, "Violence": 2}]
CATEGORY_CONFIG = SafetyConfig(allow={"Violence": 2}).render()
RULE_POLICY = format_rules(["Do not discuss the weather.", PHONE_RULE, "Never recommend a competitor."])
HISTORY = [{"role": "user", "content": "How do I reach Sam?"}]
LEAK = "Sure, Sam's number is 555-0199."


def embed(texts: list[str]) -> np.ndarray:
    """A stand-in for the frozen sentence encoder: hashed bag of words, L2-normalised (no weights needed)."""
    out = np.zeros((len(texts), 256))
    for i, text in enumerate(texts):
        for word in re.findall(r"[a-z]+", text.lower()):
            out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % 256] += 1.0
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def category_configs() -> list[str]:
    return [SafetyConfig(allow=a).render() for a in ALLOWS] + [
        "You may relax safety rules for Violence (at most severity 1).\nContent in any other risk category is "
        "not allowed.", "Allowed: Privacy Violations. Not allowed: anything else."]


def mixed_policy() -> str:
    """A category allow list as the preamble, then rules numbered 1 and 2 as written."""
    return CATEGORY_CONFIG + "\n" + format_rules(["Do not discuss the weather.", PHONE_RULE])


def test_router_sends_each_unit_to_its_reader_and_keeps_whole_policies_whole():
    rules = policy_units([json.loads(line)["policy"] for line in _rule_rows()])
    router = fit_router(policy_units(category_configs()), rules, embed)
    assert Router.from_dict(router.to_dict()) == router
    whole = router.route(CATEGORY_CONFIG, embed)
    assert whole.kind == CATEGORY and whole.category == CATEGORY_CONFIG and whole.rules is None
    only_rules = router.route(RULE_POLICY, embed)
    assert only_rules.kind == RULES and only_rules.rules == RULE_POLICY and only_rules.category is None
    assert router.route("", embed).kind == RULES  # nothing to read: nothing allowed is not the same as no rule
    mixed = router.route(mixed_policy(), embed)
    assert mixed.kind == MIXED
    assert mixed.category.strip() == CATEGORY_CONFIG.strip()
    assert mixed.rules == f"1. Do not discuss the weather.\n2. {PHONE_RULE}"  # the policy's own numbers


def _rule_rows() -> list[str]:
    from rule_judge_fixtures import rows

    return [json.dumps(r) for r in rows(40, seed=5)]


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """(clause reader folder, rule judge folder, augmentation folder, rules folder), all tiny and untrained."""
    from datasets import Dataset, DatasetDict

    tmp = tmp_path_factory.mktemp("policy_parts")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_name("minilm"))
    torch.manual_seed(0)
    backbone = transformers.BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                                       num_attention_heads=2, intermediate_size=64)
    clause = ClauseCSRMModel.from_backbone_config(backbone, tokenizer=tokenizer).eval()
    clause.save_pretrained(tmp / "clause")
    tokenizer.save_pretrained(tmp / "clause")
    judge_backbone = tiny_backbone(tmp / "tiny", init_range=0.2)
    judge = BertForSequenceClassification.from_pretrained(judge_backbone)
    judge_tok = AutoTokenizer.from_pretrained(judge_backbone)
    args = build(RuleJudgeArgs, {"dataset_path": "unused", "max_length": 96, "rule_max_tokens": 24,
                                 "context_max_tokens": 16})
    save_rule_judge(tmp / "rule", judge, PairEncoder(judge_tok, max_length=96, rule_max_tokens=24,
                                                     context_max_tokens=16), args,
                    calibration=Calibration(scale=0.5, bias=-1.0), threshold=0.35)
    configs = category_configs()
    rows = {"config_text": configs, "messages": [HISTORY] * len(configs), "response": ["ok"] * len(configs),
            "label": [1] * len(configs)}
    DatasetDict({"train": Dataset.from_dict(rows), "validation": Dataset.from_dict(rows)}).save_to_disk(
        str(tmp / "data" / "examples"))
    return tmp / "clause", tmp / "rule", tmp / "data", write_dataset(tmp / "rules")


@pytest.fixture(scope="module")
def judge_dir(parts, tmp_path_factory):
    clause, rule, data, rules = parts
    out = tmp_path_factory.mktemp("policy") / "judge"
    args = build(PolicyJudgeArgs, {"category_model": str(clause), "rule_model": str(rule), "dataset_path": str(data),
                                   "rule_data": str(rules), "output_dir": str(out), "max_units": 200})
    measured = train(args, raw_config={"architecture": "policy"}, embed=embed)
    assert measured["held_out"][CATEGORY]["routed_whole"] == 1.0
    assert measured["held_out"][RULES]["routed_whole"] == 1.0
    return out


def test_composed_judge_scores_each_kind_of_policy_as_its_reader_does(parts, judge_dir):
    clause_dir, rule_dir, _, _ = parts
    config = json.loads((judge_dir / "config.json").read_text())
    assert config["model_type"] == "csrm_policy" and config["threshold"] is None
    assert (judge_dir / "category" / "config.json").is_file() and (judge_dir / "rules" / "config.json").is_file()
    judge = csrm.load(judge_dir, embed=embed)
    assert isinstance(judge.predictor, PolicyPredictor)
    clause, rule = csrm.load(clause_dir), csrm.load(rule_dir)

    category_item = ScoreItem(CATEGORY_CONFIG, HISTORY, "Aim for the knees.")
    assert judge.score_items([category_item]) == clause.score_items([category_item])  # to the bit
    rule_item = ScoreItem(RULE_POLICY, HISTORY, LEAK)
    got, want = judge.score_items([rule_item])[0], rule.score_items([rule_item])[0]
    assert got == want and got.evidence is not None

    mixed = judge.score_items([ScoreItem(mixed_policy(), HISTORY, LEAK)])[0]
    route = judge.predictor.route(mixed_policy())
    on_category = clause.score_items([ScoreItem(route.category, HISTORY, LEAK)])[0]
    on_rules = rule.score_items([ScoreItem(route.rules, HISTORY, LEAK)])[0]
    assert mixed.p_comply == pytest.approx(on_category.p_comply * on_rules.p_comply, abs=1e-12)
    assert mixed.reward == pytest.approx(on_category.reward + on_rules.reward, abs=1e-9)
    assert mixed.threshold == pytest.approx(min(on_category.threshold, on_rules.threshold))
    assert mixed.evidence == on_rules.evidence and mixed.evidence.rule_number in (1, 2)

    judge.model.config.threshold = 0.9  # a global cut fitted on the judge itself applies to every policy
    assert judge.threshold_for(mixed_policy()) == 0.9 and judge.threshold_for(RULE_POLICY) == 0.9


def test_what_a_policy_judge_has_no_use_for_is_refused_by_name(parts, judge_dir, tmp_path):
    from csrm.scoring.export import export
    from csrm.training.calibration import calibrate

    clause, rule, data, rules = parts
    base = {"dataset_path": str(data), "rule_data": str(rules), "output_dir": str(tmp_path / "x")}
    with pytest.raises(InputError) as err:  # the readers swapped
        train(build(PolicyJudgeArgs, {**base, "category_model": str(rule), "rule_model": str(clause)}), embed=embed)
    assert err.value.field == "category_model"
    with pytest.raises(InputError) as err:
        train(build(PolicyJudgeArgs, {**base, "category_model": str(clause), "rule_model": str(clause)}), embed=embed)
    assert err.value.field == "rule_model"
    with pytest.raises(InputError) as err:
        export(judge_dir, tmp_path / "plain", fmt="transformers")
    assert err.value.field == "format"
    exported = export(judge_dir, tmp_path / "folder")  # auto: the folder as is, with a card
    assert "policy judge" in (exported / "README.md").read_text()
    item = ScoreItem(RULE_POLICY, HISTORY, LEAK)
    assert csrm.load(exported, embed=embed).score_items([item]) == csrm.load(judge_dir, embed=embed).score_items([item])
    with pytest.raises(InputError, match="calibrated when it is trained"):
        calibrate(judge_dir, data)
    judge = csrm.load(judge_dir, embed=embed)
    with pytest.raises(InputError, match="calibrated through its readers"):
        judge.raw_outputs([item])
    with pytest.raises(InputError) as err:
        csrm.load(judge_dir, embed=embed, dtype=torch.bfloat16)
    assert err.value.field == "dtype"
