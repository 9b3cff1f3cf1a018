"""Self-mined hard negatives (csrm.model.rule.mining): the judge's own false alarms, as it scores users' items."""

from __future__ import annotations

from rule_judge_fixtures import PHONE_RULE, KeywordJudge, write_dataset
from transformers import AutoTokenizer

from csrm.base.paths import default_backbone
from csrm.model.rule.aggregation import Calibration
from csrm.model.rule.args import RuleJudgeArgs
from csrm.model.rule.data import preceding_user, read_examples
from csrm.model.rule.mining import mine_negatives
from csrm.model.rule.modeling import PairEncoder
from csrm.model.rule.predictor import RulePredictor


def question_reader() -> RulePredictor:
    """A judge that fires on the phone rule whenever "Sam" is in the judged text or its User turn: it reads the
    question, not the answer, so every decline after "How do I contact Sam?" is a false alarm."""
    tok = AutoTokenizer.from_pretrained(default_backbone())
    args = RuleJudgeArgs()
    encoder = PairEncoder(tok, max_length=args.max_length, rule_max_tokens=args.rule_max_tokens,
                          context_max_tokens=args.context_max_tokens)
    model = KeywordJudge(tok.convert_tokens_to_ids("phone"), tok.convert_tokens_to_ids("sam"))
    return RulePredictor(model, encoder, args, calibration=Calibration(), threshold=0.5)


def test_mined_negatives_are_the_judges_false_alarms_and_never_violations(tmp_path):
    examples = read_examples(write_dataset(tmp_path / "data") / "train.jsonl")
    rows_with_alarm = 0
    for ex in examples:
        numbers = {r.number for r in ex.rules if r.text == PHONE_RULE}
        rows_with_alarm += any(
            (n, t) not in ex.violations and "sam" in (preceding_user(ex.turns, t) + ex.turns[t].text).lower()
            for n in numbers for t in ex.agent_indices)
    assert rows_with_alarm > 2  # the fixture holds such rows

    mined, stats = mine_negatives(question_reader(), examples, items=len(examples), count=rows_with_alarm,
                                  per_item=1)
    assert len(mined) == stats["mined_negatives"] == rows_with_alarm
    assert all(label == 0 and pair.rule == PHONE_RULE and "555" not in pair.window for pair, label in mined)
    assert stats["mining_false_alarms"] >= rows_with_alarm and stats["mined_lowest_logit"] == 4.0

    one_each, _ = mine_negatives(question_reader(), examples, items=len(examples), count=1000, per_item=1)
    assert len(one_each) == len(examples)  # the next-highest negatives fill the count, one per row at most
    assert [p for p, _ in one_each[:rows_with_alarm]] == [p for p, _ in mined]  # false alarms first
    two_each, _ = mine_negatives(question_reader(), examples, items=len(examples), count=1000, per_item=2)
    assert len(two_each) == 2 * len(examples)
