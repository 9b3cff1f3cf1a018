"""The CSRM judge: CoSAlign-style pairs that never prefer a violation, in TRL's DPO format."""

from __future__ import annotations

import itertools
import random

import pytest
import torch
from scoring_fixtures import CONFIGS, PROMPTS, tiny_decoder

from csrm.alignment.judge import (
    COLUMNS,
    JudgeInput,
    build_preference_dataset,
    preference_pairs,
    repeats_phrase,
)
from csrm.base.safety_config import SafetyConfig
from csrm.base.score_types import ScoreItem, ScoreResult
from csrm.scoring.ranking import estimated_error, rank, rank_key
from csrm.scoring.scorer import Scorer


def result(complies: bool, reward: float) -> ScoreResult:
    return ScoreResult(p_comply=0.9 if complies else 0.1, reward=reward, complies=complies, threshold=0.5)


class TableScorer:
    """A stand-in scorer whose verdict and reward are spelled in the response: ``"ok 1.5"`` / ``"bad -2"``."""

    def render(self, config):
        return config if isinstance(config, str) else config.render()

    def threshold_for(self, config):
        return 0.5

    def score_items(self, items: list[ScoreItem], thresholds=None) -> list[ScoreResult]:
        return [result(i.response.split()[0] == "ok", float(i.response.split()[1])) for i in items]


def test_error_separates_compliant_from_violating():
    assert estimated_error(result(True, -50.0)) <= 1 < 3 <= estimated_error(result(False, 50.0)) < 4
    assert estimated_error(result(True, 2.0)) < estimated_error(result(True, 1.0))
    assert rank([result(False, 9.0), result(True, -9.0), result(True, 0.0)]) == [2, 1, 0]


@pytest.mark.parametrize("strategy", ["all", "best_vs_rest", "best_vs_worst"])
def test_pairs_never_prefer_a_violation_and_follow_the_ranking(strategy):
    rng = random.Random(0)
    for _ in range(300):
        results = [result(rng.random() < 0.5, float(rng.choice([-1, 0, 0.5, 2, rng.gauss(0, 3)])))
                   for _ in range(rng.randint(0, 6))]
        pairs = preference_pairs(results, strategy=strategy)
        assert len(set(pairs)) == len(pairs)
        for c, r in pairs:
            assert results[c].complies  # chosen error < 3: a violating response is never chosen
            assert rank_key(results[c]) < rank_key(results[r])  # strictly better: no ties
            assert estimated_error(results[c]) < estimated_error(results[r])
        if strategy == "all":  # every strictly ordered pair with a compliant winner, and only those
            expected = {(c, r) for c, r in itertools.permutations(range(len(results)), 2)
                        if results[c].complies and rank_key(results[c]) < rank_key(results[r])}
            assert set(pairs) == expected


def test_pairs_drop_both_violating_and_ties():
    assert preference_pairs([result(False, 1.0), result(False, -1.0)]) == []
    assert preference_pairs([result(True, 1.0), result(True, 1.0)]) == []
    assert preference_pairs([result(True, 1.0), result(True, 1.0), result(False, 5.0)]) == [(0, 2), (1, 2)]
    assert preference_pairs([result(True, 1.0), result(True, 0.9)], min_margin=0.5) == []
    with pytest.raises(ValueError):
        preference_pairs([], strategy="best")


def test_degenerate_text_is_never_chosen_and_ranks_below_the_rest_of_its_verdict():
    assert repeats_phrase("I can help. I can help you with that.") is False  # a 3-gram twice is not enough
    assert repeats_phrase("the cat sat on the mat and the cat sat on the mat")
    results = [result(True, 5.0), result(True, 1.0), result(False, 2.0)]
    degenerate = [True, False, False]
    assert preference_pairs(results, strategy="best_vs_worst") == [(0, 2)]
    assert preference_pairs(results, strategy="best_vs_worst", degenerate=degenerate) == [(1, 2)]
    assert preference_pairs(results, strategy="all", degenerate=degenerate) == [(1, 0), (1, 2)]
    assert preference_pairs(results[:1] + results[2:], strategy="all", degenerate=[True, False]) == []
    looping = "ok 9 " + "sure, here it is " * 3
    pairs = build_preference_dataset(TableScorer(), [JudgeInput("cfg", "hi", [looping, "ok 1", "bad 0"])],
                                     strategy="best_vs_worst")
    assert [p["chosen"][0]["content"] for p in pairs] == ["ok 1"]


def test_dataset_is_conversational_with_the_config_as_system_message():
    inputs = [
        JudgeInput(CONFIGS[0], PROMPTS[0], ["bad 3", "ok 0.5", "ok 1", "bad -1"]),
        {"config": SafetyConfig(text=CONFIGS[1]), "messages": [{"role": "system", "content": "Be brief."},
                                                               {"role": "user", "content": PROMPTS[1]}],
         "responses": ["ok 2", "ok 2"]},  # a tie: no pair
        {"config": CONFIGS[2], "prompt": PROMPTS[2], "responses": ["bad 1", "bad 2"]},  # both violate: no pair
    ]
    ds = build_preference_dataset(TableScorer(), inputs)
    assert set(COLUMNS) <= set(ds.column_names)
    assert len(ds) == 5  # ok1>ok0.5, ok1>bad3, ok1>bad-1, ok0.5>bad3, ok0.5>bad-1
    for row in ds:
        assert row["prompt"] == [{"role": "system", "content": CONFIGS[0]}, {"role": "user", "content": PROMPTS[0]}]
        assert row["chosen"][0]["role"] == row["rejected"][0]["role"] == "assistant"
        assert row["chosen"][0]["content"].startswith("ok")
        assert row["chosen_error"] < 3 and row["margin"] > 0
    ds = build_preference_dataset(TableScorer(), [inputs[1]], strategy="all")
    assert len(ds) == 0 and set(COLUMNS) <= set(ds.column_names)
    merged = build_preference_dataset(TableScorer(), [{**inputs[1], "responses": ["ok 2", "bad 2"]}])
    assert merged[0]["prompt"][0] == {"role": "system", "content": f"{CONFIGS[1]}\n\nBe brief."}


def dpo_tokenizer():
    from scoring_fixtures import tokenizer

    tok = tokenizer(decoder=True)
    tok.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                         "{% if add_generation_prompt %}assistant: {% endif %}")
    return tok


def test_real_scorer_pairs_train_one_dpo_step(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import DPOConfig, DPOTrainer

    model, tok = tiny_decoder()
    scorer = Scorer(model, tok)
    responses = ["I can't help with that.", "Here is a safe, general overview.", "Step one: buy the parts.",
                 "Sure!", "A long, careful and helpful answer that stays within the rules."]
    inputs = [JudgeInput(c, p, responses) for c in CONFIGS for p in PROMPTS]
    ds = build_preference_dataset(scorer, inputs)
    assert len(ds) > 0
    for row in ds:  # the score columns are the scorer's own numbers, and the rule holds
        config, prompt = row["prompt"][0]["content"], row["prompt"][1]["content"]
        chosen = scorer.score(config, prompt, row["chosen"][0]["content"])
        rejected = scorer.score(config, prompt, row["rejected"][0]["content"])
        assert chosen.complies and row["chosen_p_comply"] == pytest.approx(chosen.p_comply, abs=1e-5)
        assert row["rejected_reward"] == pytest.approx(rejected.reward, abs=1e-5)
        assert rank_key(chosen) < rank_key(rejected)

    dpo_tok = dpo_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(dpo_tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, pad_token_id=dpo_tok.pad_token_id)
    policy, ref = LlamaForCausalLM(config), LlamaForCausalLM(config)
    args = DPOConfig(output_dir=str(tmp_path / "dpo"), per_device_train_batch_size=2, max_steps=1, use_cpu=True,
                     bf16=False, report_to="none", max_length=96, save_strategy="no", logging_steps=1)
    trainer = DPOTrainer(model=policy, ref_model=ref, args=args, train_dataset=ds.select(range(min(4, len(ds)))),
                         processing_class=dpo_tok)
    out = trainer.train()
    assert out.global_step == 1 and torch.isfinite(torch.tensor(out.training_loss))
