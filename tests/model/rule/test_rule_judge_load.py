"""The rule judge behind ``csrm.load``: a tiny judge trained on hand-made rule data and saved to disk loads as
the one :class:`csrm.scoring.scorer.Scorer` (its family read from ``config.json``'s ``model_type``), scores
ScoreItems with evidence naming the violated rule, and refuses options it has no use for."""

from __future__ import annotations

import json

import pytest
from rule_judge_fixtures import PHONE_RULE, tiny_backbone, write_dataset

import csrm
from csrm.base.config import build
from csrm.base.errors import InputError
from csrm.base.rule_text import format_rules
from csrm.base.score_types import ScoreItem
from csrm.model.rule.args import RuleJudgeArgs
from csrm.model.rule.trainer import train
from csrm.scoring.scorer import Scorer

pytestmark = pytest.mark.slow  # one tiny training run (~90 s on 2 shared cores) serves both tests

RULES = ["Do not discuss the weather.", PHONE_RULE, "Never recommend a competitor."]  # the phone rule is rule 2


@pytest.fixture(scope="module")
def judge_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rule_load")
    # 96 rows (~30 positive pairs), 6 epochs at 3e-3 from a 0.2-std start: the tiny judge learns the phone rule
    # (measured: the leaking pair's logit ~+4, every other pair ~-5.5; fit ~90 s on 2 shared cores)
    args = build(RuleJudgeArgs, {"dataset_path": str(write_dataset(tmp / "data", n_train=96)),
                                 "output_dir": str(tmp / "judge"),
                                 "model_name_or_path": str(tiny_backbone(tmp / "tiny", init_range=0.2)),
                                 "max_train_pairs": 400, "num_train_epochs": 6.0, "learning_rate": 3e-3,
                                 "batch_size": 16,
                                 "max_length": 96, "rule_max_tokens": 24, "context_max_tokens": 16,
                                 "freeze_layers": 0})
    train(args, from_config=True, progress=False)
    return tmp / "judge"


def items() -> list[ScoreItem]:
    history = [{"role": "user", "content": "Hi there."}, {"role": "assistant", "content": "Hello, how can I help?"},
               {"role": "user", "content": "How do I reach Sam?"}]
    return [ScoreItem(config=format_rules(RULES), messages=history, response="Sure, Sam's number is 555-0199."),
            ScoreItem(config=format_rules(RULES), messages=history, response="Thanks for reaching out to support.")]


def test_csrm_load_scores_with_evidence_naming_the_rule(judge_dir):
    config = json.loads((judge_dir / "config.json").read_text())
    assert config["model_type"] == "csrm_rule" and config["rule_judge"]["family"] == "rule"
    scorer = csrm.load(judge_dir)
    assert isinstance(scorer, Scorer) and type(scorer.predictor).__name__ == "RuleFamilyPredictor"
    leak, benign = scorer.score_items(items())
    assert leak.p_comply < benign.p_comply
    assert leak.evidence is not None and leak.evidence.rule_number == 2 and leak.evidence.rule_text == PHONE_RULE
    assert leak.evidence.turn_index == 3  # the response: turns are the three messages, then the response
    assert leak.threshold == pytest.approx(config["threshold"]) and leak.complies == (leak.p_violation < leak.threshold)
    # the same numbers through Scorer(model, tokenizer) (the family picked from the model object) and the
    # per-batch stream csrm score writes from
    again = Scorer(scorer.model, scorer.tokenizer).score_items(items())
    assert [r.p_comply for r in again] == pytest.approx([leak.p_comply, benign.p_comply])
    streamed = {i: r for indices, results in scorer.iter_batches(items()) for i, r in zip(indices, results, strict=True)}
    assert streamed[0].evidence == leak.evidence
    logits, rewards = scorer.raw_outputs(items())
    assert logits[0] < logits[1] and rewards[0] == pytest.approx(leak.reward)


def test_rule_judge_refuses_unsupported_options(judge_dir):
    with pytest.raises(InputError, match="does not support bf16"):
        csrm.load(judge_dir, bf16=True)
    scorer = csrm.load(judge_dir, device="cpu")  # a GPU is the default where present (the clause family's rule)
    assert scorer.device.type == "cpu" and next(scorer.model.parameters()).device.type == "cpu"


def test_csrm_score_writes_the_evidence(judge_dir, tmp_path):
    from csrm.app.score import main

    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text("".join(json.dumps({"id": f"i{k}", "config": it.config, "messages": it.messages,
                                       "response": it.response}) + "\n" for k, it in enumerate(items())))
    assert main([str(judge_dir), "--input", str(inp), "--output", str(out), "--no-progress"]) == 0
    leak, benign = [json.loads(line) for line in out.read_text().splitlines()]
    assert leak["evidence"] == {"rule_number": 2, "rule_text": PHONE_RULE, "turn_index": 3,
                                "p_violation": pytest.approx(leak["evidence"]["p_violation"]), "reason": ""}
    assert leak["p_comply"] < benign["p_comply"] and set(benign) >= {"id", "p_comply", "reward", "evidence"}
