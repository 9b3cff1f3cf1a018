"""The rule judge end to end: training a tiny model on hand-made rule data, saving, loading, scoring with
evidence, and the OR's behaviour on long answers through the real predictor path."""

from __future__ import annotations

import json
import re

import pytest
from rule_judge_fixtures import (
    PHONE_RULE,
    QUESTIONS,
    KeywordJudge,
    rows,
    tiny_backbone,
    tiny_decoder_backbone,
    write_dataset,
)
from transformers import AutoTokenizer

from csrm.base.config import build
from csrm.base.errors import InputError
from csrm.base.paths import default_backbone
from csrm.base.rule_text import Turn, format_rules, split_rules
from csrm.base.score_types import ScoreItem
from csrm.model.rule.aggregation import Calibration
from csrm.model.rule.args import RuleJudgeArgs
from csrm.model.rule.data import parse_row, read_examples
from csrm.model.rule.modeling import PairEncoder
from csrm.model.rule.predictor import META_FILE, RulePredictor
from csrm.model.rule.trainer import example_pairs, is_uncased, sample_pairs, train

POLICY = format_rules(["Do not discuss the weather.", PHONE_RULE, "Never recommend a competitor."])
BENIGN = "Thanks for asking, your order is on its way and will arrive soon. "


def keyword_predictor(**fields) -> RulePredictor:
    tok = AutoTokenizer.from_pretrained(default_backbone())
    args = RuleJudgeArgs(**fields)
    encoder = PairEncoder(tok, max_length=args.max_length, rule_max_tokens=args.rule_max_tokens,
                          context_max_tokens=args.context_max_tokens)
    phone, digits = tok.convert_tokens_to_ids("phone"), tok.convert_tokens_to_ids("555")
    return RulePredictor(KeywordJudge(phone, digits), encoder, args, calibration=Calibration(1.0, 0.0),
                         threshold=0.5)


def item(response: str) -> ScoreItem:
    return ScoreItem(config=POLICY, messages=[{"role": "user", "content": "How do I reach Sam?"}],
                     response=response)


@pytest.mark.parametrize("aggregation", ["max", "softmax"])
def test_long_benign_answer_does_not_drift_and_one_violation_is_flagged(aggregation):
    judge = keyword_predictor(aggregation=aggregation)
    short, = judge.score_items([item(BENIGN)])
    long_text = (BENIGN * (20_000 // len(BENIGN) + 1))[:20_000]
    long, = judge.score_items([item(long_text)])
    assert abs(short.p_comply - long.p_comply) <= 0.05 and long.complies
    middle = len(long_text) // 2
    leaked = long_text[:middle] + " Sam's phone is 555 0199. " + long_text[middle:]
    flagged, = judge.score_items([item(leaked)])
    assert not flagged.complies
    assert flagged.evidence.rule_number == 2 and flagged.evidence.rule_text == PHONE_RULE
    assert flagged.evidence.turn_index == 1 and flagged.evidence.reason == ""  # read by the model, not counted


def test_a_verbatim_repeat_is_read_once_and_new_sentences_are_all_read():
    judge = keyword_predictor(condition_gate=False)
    rules = split_rules(POLICY)

    def windows(answer: str) -> set[str]:
        pairs, _ = judge.pairs_for(rules, [Turn("user", "How do I reach Sam?"), Turn("assistant", answer)])
        return {p.window for p in pairs}

    assert windows(BENIGN * 300) == windows(BENIGN) == {BENIGN.strip()}  # 20,000 characters, one sentence read
    leaked = BENIGN * 150 + "Sam's phone is 555 0199. " + BENIGN * 150
    assert windows(leaked) == {BENIGN + "Sam's phone is 555 0199."}
    varied = " ".join(f"Order {i} is on its way and will arrive on day {i}." for i in range(400))
    read = " ".join(windows(varied))
    assert all(f"Order {i} " in read and f"day {i}." in read for i in range(400))  # no repeats: all read


def test_a_rule_whose_topic_nobody_raised_is_not_read():
    policy = format_rules(["When the user asks about sfumato, never give a phone number.", "Say hello."])
    leak = [{"role": "user", "content": "How do I reach Sam?"}]
    on = keyword_predictor()
    result, = on.score_items([ScoreItem(config=policy, messages=leak, response="Sam's phone is 555 0199.")])
    assert result.complies  # the rule waits for sfumato, which nobody mentioned
    asked = [{"role": "user", "content": "Tell me about sfumato."}, {"role": "assistant", "content": "Sure."},
             {"role": "user", "content": "And how do I reach Sam?"}]
    result, = on.score_items([ScoreItem(config=policy, messages=asked, response="Sam's phone is 555 0199.")])
    assert not result.complies and result.evidence.rule_number == 1  # raised two turns before: it applies
    off, = keyword_predictor(condition_gate=False).score_items(
        [ScoreItem(config=policy, messages=leak, response="Sam's phone is 555 0199.")])
    assert not off.complies


def test_a_length_limit_is_counted_not_read():
    policy = format_rules([PHONE_RULE, "Use at most five words in every response."])
    rules = split_rules(policy)
    ask = [{"role": "user", "content": "How do I reach Sam?"}]
    judge = keyword_predictor()
    pairs, _ = judge.pairs_for(rules, [Turn("user", "Hi"), Turn("assistant", "ok")])
    assert {p.rule_index for p in pairs} == {0}  # the limit never reaches the cross-encoder
    long, short = judge.score_items([ScoreItem(config=policy, messages=ask, response=BENIGN),
                                     ScoreItem(config=policy, messages=ask, response="Ask at the desk.")])
    assert not long.complies and long.evidence.rule_number == 2 and long.evidence.turn_index == 1
    words = len(re.findall(r"\w+", BENIGN))  # counted as IFEval counts words
    assert long.evidence.reason == f"{words} words; the rule allows at most 5"
    assert long.as_json()["evidence"]["reason"] == long.evidence.reason
    assert short.complies
    read, = keyword_predictor(count_limits=False).score_items([ScoreItem(config=policy, messages=ask,
                                                                         response=BENIGN)])
    assert read.complies  # the keyword pair model cannot count: only the code saw the violation


@pytest.mark.parametrize(("rule", "broken", "kept", "reason"), [
    # the uncased tokenizer reads every emoji as [UNK] and cannot see case; a format is a character test
    ("Never use emojis.", "Ask at the desk \U0001F389", "Ask at the desk.", "1 emoji (\U0001F389); the rule allows none"),
    ("Use all lowercase letters.", "Ask at the desk.", "ask at the desk.",
     "1 capital letter (first in 'Ask'); the rule asks for lowercase"),
    ("Wrap your entire response in JSON format.", "Ask at the desk.", '{"reply": "Ask at the desk."}',
     "the reply is not valid JSON"),
    ("Do not use any commas in your response.", "Ask at the desk, please.", "Ask at the desk.",
     "1 comma; the rule allows none"),
    ("Always begin your response with a capital letter.", "ask at the desk.", "Ask at the desk.",
     "the reply starts with 'a'; the rule asks for a capital letter"),
])
def test_a_rule_checked_by_code_is_never_read_and_says_what_it_found(rule, broken, kept, reason):
    policy = format_rules([PHONE_RULE, rule])
    ask = [{"role": "user", "content": "How do I reach Sam?"}]
    judge = keyword_predictor()
    pairs, _ = judge.pairs_for(split_rules(policy), [Turn("user", "Hi"), Turn("assistant", broken)])
    assert {p.rule_index for p in pairs} == {0}  # the checked rule never reaches the cross-encoder
    bad, good = judge.score_items([ScoreItem(config=policy, messages=ask, response=broken),
                                   ScoreItem(config=policy, messages=ask, response=kept)])
    assert not bad.complies and bad.evidence.rule_number == 2 and bad.evidence.reason == reason
    assert good.complies
    unread, = keyword_predictor(count_limits=False).score_items([ScoreItem(config=policy, messages=ask,
                                                                           response=broken)])
    assert unread.complies  # the keyword pair model does not see it either: only the code did


def test_a_rule_on_how_a_conversation_starts_holds_its_first_agent_turn_only():
    policy = format_rules([PHONE_RULE, "Never start the first word in a conversation with a lowercase letter."])
    judge = keyword_predictor()
    late = [Turn("user", "Hi"), Turn("assistant", "Hello!"), Turn("user", "Desk?"), Turn("assistant", "ask there.")]
    first = [Turn("user", "Hi"), Turn("assistant", "hello!"), Turn("user", "Desk?"), Turn("assistant", "Ask there.")]
    rules = split_rules(policy)
    assert judge.counted_violations(rules, late) == []
    assert judge.counted_violations(rules, first) == [(1, 1, "the reply starts with 'h'; the rule asks for a capital "
                                                             "letter")]


def test_a_repetition_trigger_is_counted_over_the_conversation_not_read():
    """"If the user repeats the same message 3 times, respond with ...": the reply after the third time breaks it,
    which only the history shows; the pair model never reads the rule, and the evidence says what was counted."""
    escalate = "Let me connect you with a human agent."
    policy = format_rules([PHONE_RULE, f'If a user repeats the same message 3 times, immediately respond with "{escalate}"'])
    asked = []
    for text in ("I was charged twice for my order.", "I was charged twice!", "Like I said, I was charged twice."):
        asked += [{"role": "user", "content": text}, {"role": "assistant", "content": "What is the order number?"}]
    asked = asked[:-1]  # the third time is the last User turn: the response answers it
    judge = keyword_predictor()
    rules = split_rules(policy)
    pairs, _ = judge.pairs_for(rules, [Turn(m["role"], m["content"]) for m in asked] + [Turn("assistant", "ok")])
    assert {p.rule_index for p in pairs} == {0}
    missed, kept, waits, early = judge.score_items([
        ScoreItem(config=policy, messages=asked, response="What is the order number?"),
        ScoreItem(config=policy, messages=asked, response=f"I am sorry. {escalate}"),
        ScoreItem(config=policy, messages=asked[:3], response="What is the order number?"),  # said twice so far
        ScoreItem(config=policy, messages=asked[:3], response=escalate)])  # ... and escalated already
    assert not missed.complies and missed.evidence.rule_number == 2 and missed.evidence.turn_index == 5
    assert missed.evidence.reason == ("the user sent the same message 3 times (turns 0, 2, 4); the next reply does "
                                      f'not say "{escalate}"')
    assert kept.complies and waits.complies
    assert not early.complies and early.evidence.turn_index == 3 and "2 times" in early.evidence.reason
    unread, = keyword_predictor(count_limits=False).score_items(
        [ScoreItem(config=policy, messages=asked, response="What is the order number?")])
    assert unread.complies  # the pair model cannot count turns: only the code saw it


def test_a_turn_holding_a_conditional_rules_word_is_not_read_against_it():
    """"When ..., include the word '555'": a turn that holds 555 keeps the rule whatever the condition, so the
    pair model (which fires on 'phone' in a rule and 555 in a reply) never reads it; without the word it does."""
    policy = format_rules(['When the user asks for a phone number, include the word "555" in your response.'])
    ask = [{"role": "user", "content": "What is Sam's phone number?"}]
    judge = keyword_predictor()
    with_word, = judge.score_items([ScoreItem(config=policy, messages=ask, response="Sam's phone is 555 0199.")])
    assert with_word.complies and with_word.evidence is None
    rules = split_rules(policy)
    assert judge.pairs_for(rules, [Turn("user", ask[0]["content"]), Turn("assistant", "It is 0199.")])[0]  # read
    read, = keyword_predictor(count_limits=False).score_items(
        [ScoreItem(config=policy, messages=ask, response="Sam's phone is 555 0199.")])
    assert not read.complies  # the pair model alone fires on it


def test_narrowing_recall_counts_a_violated_limit_as_judged():
    from csrm.base.rule_text import Rule
    from csrm.model.rule.data import RuleExample
    from tools.rule_judge_eval import narrowing_recall

    ex = RuleExample(rules=[Rule(1, "Use at most five words in every response."), Rule(2, PHONE_RULE)],
                     turns=[Turn("user", "How do I reach Sam?"), Turn("assistant", BENIGN)], label=1,
                     violations={(1, 1)})
    judge = keyword_predictor()
    assert all(p.rule_index != 0 for p in judge.pairs_for(ex.rules, ex.turns)[0])  # not read by the model ...
    assert narrowing_recall(judge, [ex]) == {"recall": 1.0, "violations": 1}  # ... but judged by counting


def test_evidence_names_the_turn_that_broke_the_rule():
    judge = keyword_predictor()
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Sam is at 555 0199."},
                {"role": "user", "content": "Thanks"}]
    result, = judge.score_items([ScoreItem(config=POLICY, messages=messages, response="You are welcome.")])
    assert not result.complies and result.evidence.turn_index == 1 and result.evidence.rule_number == 2
    pairs, total = judge.pairs_for(judge_rules := split_rules(
        POLICY), [Turn("user", "Hi"), Turn("assistant", "ok")])
    assert total == len(judge_rules) and len(pairs) == total  # no embedder: every rule read


def test_sampling_keeps_positives_and_hard_negatives(tmp_path):
    root = write_dataset(tmp_path / "data")
    examples = read_examples(root / "train.jsonl")
    pairs, counts = sample_pairs(examples, RuleJudgeArgs(max_train_pairs=60, positive_share=0.3))
    labels = [y for _, y in pairs]
    assert len(pairs) == 60 and sum(labels) == counts["positives"] > 0
    assert counts["hard_negatives"] > 0
    assert all(p.rule == PHONE_RULE and "555" in p.window for p, y in pairs if y)


def test_twin_negatives_draw_the_compliant_twin_first():
    """With ``twin_negatives`` the violated rule against the twin's compliant answer (same conversation, its own
    base_id) is a hard negative drawn before any other; without it (the default), or for rows without a
    conversation id, hard negatives come from the same base_id and the twin is only a random negative."""
    from csrm.base.rule_text import Rule
    from csrm.model.rule.data import RuleExample

    def example(answer: str, label: int, base_id: str, conversation: str) -> RuleExample:
        return RuleExample(rules=[Rule(1, PHONE_RULE), Rule(2, "Keep a friendly tone.")],
                           turns=[Turn("user", "How do I reach Sam?"), Turn("assistant", answer)], label=label,
                           violations={(1, 1)} if label else set(), base_id=base_id, conversation=conversation)

    fail = example("Sam is at 555 0199.", 1, "f", "c1")
    twin = example("I can't share Sam's number, sorry.", 0, "o", "c1")
    others = [example(f"Our store opens at {h}.", 0, f"x{h}", f"c{h}") for h in range(2, 40)]
    args = RuleJudgeArgs(max_train_pairs=6, positive_share=1 / 6, twin_negatives=True)  # 1 positive, 2 hard
    pairs, counts = sample_pairs([fail, twin, *others], args)
    assert counts["positives"] == 1 and counts["hard_negatives"] == 2
    assert any(p.rule == PHONE_RULE and "sorry" in p.window for p, y in pairs if not y)  # the twin, kept
    apart = [RuleExample(**{**vars(e), "conversation": e.base_id}) for e in (fail, twin, *others)]
    assert sample_pairs(apart, args)[1]["hard_negatives"] == 1  # by base_id: the twin is only a random negative
    off = RuleJudgeArgs(max_train_pairs=6, positive_share=1 / 6)  # the default groups by base_id too
    assert sample_pairs([fail, twin, *others], off)[1]["hard_negatives"] == 1
    tight, counts = sample_pairs([fail, twin, *others], RuleJudgeArgs(max_train_pairs=4, positive_share=0.25,
                                                                      twin_negatives=True))
    assert counts["hard_negatives"] == counts["twin_negatives"] == 1  # one hard place: the twin takes it
    assert any(p.rule == PHONE_RULE and "sorry" in p.window for p, y in tight if not y)


def tiny_training(tmp_path, backbone, learning_rate: float) -> RuleJudgeArgs:
    """Settings that train a tiny backbone on the fixture's 48 rows in seconds (400 pairs, 3 epochs)."""
    return build(RuleJudgeArgs, {"dataset_path": str(write_dataset(tmp_path / "data")),
                                 "output_dir": str(tmp_path / "judge"), "model_name_or_path": str(backbone),
                                 "max_train_pairs": 400, "num_train_epochs": 3.0, "learning_rate": learning_rate,
                                 "batch_size": 16, "max_length": 96, "rule_max_tokens": 24,
                                 "context_max_tokens": 16, "freeze_layers": 0})


@pytest.mark.slow
def test_train_save_load_and_score(tmp_path):
    measured = train(tiny_training(tmp_path, tiny_backbone(tmp_path / "tiny"), 1e-3), from_config=True,
                     progress=False)
    assert measured["positives"] > 0 and measured["peak_rss_gb"] > 0
    meta = json.loads((tmp_path / "judge" / META_FILE).read_text())
    assert meta["family"] == "rule" and meta["args"]["max_length"] == 96
    judge = RulePredictor.from_pretrained(tmp_path / "judge", narrowing=False)
    results = judge.score_items([item("Sam's phone is 555-0199."), item(BENIGN)])
    assert results[0].p_violation > results[1].p_violation  # learnt from 400 pairs of the fixture
    assert results[0].evidence is not None and results[0].evidence.turn_index == 1
    with pytest.raises(InputError, match="no rule_judge.json"):
        RulePredictor.from_pretrained(tmp_path / "tiny")


def test_a_decoder_backbone_reads_pairs_through_the_text_template(tmp_path):
    """A decoder (SmolLM2's kind: no special tokens between segments, no token_type_ids) gets the rule and the
    text between :data:`TEXT_TEMPLATE`'s words, the question last; its lower layers freeze like an encoder's."""
    from csrm.model.rule.modeling import TEXT_TEMPLATE, Pair, freeze_lower, load_backbone, pair_logits

    tok, model = load_backbone(str(tiny_decoder_backbone(tmp_path / "tiny")))
    encoder = PairEncoder(tok, max_length=64, rule_max_tokens=16, context_max_tokens=8)
    features, _ = encoder.encode([Pair(PHONE_RULE, "How do I reach Sam?", "Sure, Sam's number is 555-0199.")])
    text = tok.decode(features[0]["input_ids"])
    assert text.index("Rule") < text.index("reveal") < text.index("Conversation") < text.index("555")
    assert text.endswith(tok.decode(tok(TEXT_TEMPLATE[2], add_special_tokens=False)["input_ids"]))
    assert set(encoder.collate(features)) == {"input_ids", "attention_mask"}
    total = sum(p.numel() for p in model.parameters())
    trainable = freeze_lower(model, 1)
    frozen = [*model.base_model.embed_tokens.parameters(), *model.base_model.layers[0].parameters()]
    assert trainable == total - sum(p.numel() for p in frozen) and not any(p.requires_grad for p in frozen)
    pairs = [Pair(PHONE_RULE, "", "Sure, Sam's number is 555-0199."), Pair(PHONE_RULE, "", "Happy to help.")]
    alone = pair_logits(model, encoder, pairs[:1])
    assert pair_logits(model, encoder, pairs)[0] == pytest.approx(alone[0], abs=1e-5)  # padding is not read


@pytest.mark.slow
def test_a_decoder_rule_judge_trains_saves_and_scores(tmp_path):
    train(tiny_training(tmp_path, tiny_decoder_backbone(tmp_path / "tiny"), 3e-3), from_config=True, progress=False)
    import csrm

    config = json.loads((tmp_path / "judge" / "config.json").read_text())
    assert config["model_type"] == "csrm_rule" and config["judge"]["model_type"] == "llama"
    leak, benign = csrm.load(tmp_path / "judge").score_items([item("Sam's phone is 555-0199."), item(BENIGN)])
    assert leak.p_violation > benign.p_violation  # the decoder read the fixture's phone rule
    assert leak.evidence is not None and leak.evidence.rule_text == PHONE_RULE


def test_eval_tool_on_generated_rows(tmp_path):
    from tools.rule_judge_eval import generated, length_test

    root = write_dataset(tmp_path / "data")
    judge = keyword_predictor()
    report = generated(judge, root)
    assert report["n"] == 16 and report["auroc"] == 1.0 and report["named_rule_and_turn"] == 1.0
    assert report["narrowing"]["recall"] == 1.0 and report["narrowing"]["violations"] > 0
    length = length_test(judge, root)
    assert length["n"] > 0 and length["max_abs_delta_p_comply"] <= 0.05
    assert length["violation_flagged_share"] == 1.0


def test_saved_layouts_load_with_the_same_weights(tmp_path):
    """``save`` writes a ``csrm_rule`` folder (the classifier inside RuleJudgeModel); a folder saved before the
    family was registered (the plain classifier beside rule_judge.json, with the int8 field of that time) still
    loads for the tools, with the same pair logits; csrm.load takes only the registered layout."""
    import csrm
    from csrm.model.rule.modeling import Pair, pair_logits
    from csrm.model.rule.predictor import save

    tok = AutoTokenizer.from_pretrained(default_backbone())
    from transformers import AutoModelForSequenceClassification

    classifier = AutoModelForSequenceClassification.from_pretrained(str(tiny_backbone(tmp_path / "tiny", init_range=0.2)))
    args = RuleJudgeArgs(max_length=96, rule_max_tokens=24, context_max_tokens=16)
    encoder = PairEncoder(tok, max_length=96, rule_max_tokens=24, context_max_tokens=16)
    save(tmp_path / "new", classifier, encoder, args, calibration=Calibration(1.0, 0.0), threshold=0.4)
    legacy = tmp_path / "legacy"
    classifier.save_pretrained(str(legacy))
    tok.save_pretrained(str(legacy))
    meta = json.loads((tmp_path / "new" / META_FILE).read_text())
    meta["args"]["int8"] = True  # saved while int8 scoring existed: loads, and scores in float32
    (legacy / META_FILE).write_text(json.dumps(meta))
    pairs = [Pair(PHONE_RULE, "How do I reach Sam?", "Sam's number is 555-0199."),
             Pair("Do not discuss the weather.", "", "It is sunny today.")]
    expected = pair_logits(classifier, encoder, pairs)
    assert expected[0] != pytest.approx(expected[1])  # a 0.2-std start reads its input
    for folder in ("new", "legacy"):
        judge = RulePredictor.from_pretrained(tmp_path / folder, narrowing=False)
        assert judge.threshold == 0.4
        assert pair_logits(judge.model, judge.encoder, pairs) == pytest.approx(expected, abs=1e-5)
    with pytest.raises(InputError, match="model_type 'bert'"):
        csrm.load(tmp_path / "legacy")


def test_an_uncased_tokenizer_leaves_case_dependent_rules_out_of_training():
    assert is_uncased(AutoTokenizer.from_pretrained(default_backbone()))  # all-MiniLM-L6-v2 lower-cases
    row = next(r for r in rows(10, 0) if r["label"] == "FAIL")
    meta = json.loads(row["metadata"])
    phone = meta["violations"][0][0]
    example = parse_row(dict(row, metadata=json.dumps({**meta, "case_dependent": [phone]})))
    cased = example_pairs(example, 400)
    uncased = example_pairs(example, 400, uncased=True)
    assert any(y for _, y in cased) and not any(y for _, y in uncased)
    assert {p.rule for p, _ in cased} - {p.rule for p, _ in uncased} == {PHONE_RULE}
    assert len(cased) - len(uncased) == len(example.agent_indices)  # that rule's pairs, one per Agent turn


def test_history_dependent_pairs_are_left_out_of_training():
    row = next(r for r in rows(10, 0) if r["label"] == "FAIL")
    meta = json.loads(row["metadata"])
    (phone, turn), = meta["violations"]
    example = parse_row(dict(row, metadata=json.dumps({**meta, "history_dependent": [[phone, 1]]})))
    kept = {(p.rule_index + 1, p.turn_index) for p, _ in example_pairs(example, 400)}
    assert (phone, turn) in kept and (phone, 1) not in kept  # only the listed pair goes
    with pytest.raises(InputError, match="metadata.history_dependent"):
        parse_row(dict(row, metadata=json.dumps({**meta, "history_dependent": [3]})))


def test_rule_alarms_name_a_rule_that_fires_on_every_reply(tmp_path):
    from tools.rule_judge_eval import rule_alarms

    examples = read_examples(write_dataset(tmp_path / "data") / "train.jsonl")
    reader = rule_alarms(keyword_predictor(), examples, min_pairs=1)
    assert reader["rules_above_0_on_90pct_of_pass_pairs"] == 0
    assert reader["fail_best_logit_violated_rule"] > reader["fail_best_logit_other_rules"]
    tok = AutoTokenizer.from_pretrained(default_backbone())  # a judge that fires on the weather rule whatever
    alarm = keyword_predictor()                              # the reply ("agent" tags every judged segment)
    alarm.model = KeywordJudge(tok.convert_tokens_to_ids("weather"), tok.convert_tokens_to_ids("agent"))
    report = rule_alarms(alarm, examples, min_pairs=1)
    top = report["top_rules_on_pass_items"][0]
    assert top["rule"] == "Do not discuss the weather." and top["share_above_0"] == 1.0
    assert report["rules_above_0_on_90pct_of_pass_pairs"] == 1
    assert report["fail_best_logit_violated_rule"] < report["fail_best_logit_other_rules"]
    assert json.loads(json.dumps(report)) == report  # the tool writes it as JSON


def test_pair_reading_matched_negatives_expose_judges_that_read_one_side(tmp_path):
    from tools.rule_judge_eval import matched_pairs, pair_reading

    root = write_dataset(tmp_path / "data")
    positives, negatives = matched_pairs(read_examples(root / "test.jsonl"))
    assert positives and all(len(negatives[name]) == len(positives) for name in ("same_rule", "same_turn", "any"))
    assert 0 < len(negatives["same_question"]) <= len(positives)  # only where the data hold one
    for pair, _ in negatives["same_question"]:  # the phone rule, the same question, an answer without a number
        assert pair.rule == PHONE_RULE and pair.context in QUESTIONS and "555" not in pair.window
    for (pos, _), (same_rule, _), (same_turn, _) in zip(positives, negatives["same_rule"], negatives["same_turn"],
                                                        strict=True):
        assert same_rule.rule == pos.rule and "555" not in same_rule.window  # the rule, kept by another window
        assert same_turn.window == pos.window and same_turn.rule != PHONE_RULE  # the window, under a rule it keeps
    reads = pair_reading(keyword_predictor(), root)  # fires iff the phone rule meets a number: reads both sides
    assert reads["same_rule"]["judge"] == reads["same_turn"]["judge"] == reads["same_question"]["judge"] == 1.0
    assert reads["same_rule"]["rule_only_probe"] == 0.5  # one rule text: the probe cannot tell the pairs apart
    tok = AutoTokenizer.from_pretrained(default_backbone())
    rule_only = keyword_predictor()  # fires on the phone rule whatever the window ("agent" tags every window)
    rule_only.model = KeywordJudge(tok.convert_tokens_to_ids("phone"), tok.convert_tokens_to_ids("agent"))
    report = pair_reading(rule_only, root)
    assert report["same_rule"]["judge"] == 0.5 and report["same_turn"]["judge"] == 1.0
    turn_only = keyword_predictor()  # fires on a number under any rule ([CLS] is in every rule segment)
    turn_only.model = KeywordJudge(tok.cls_token_id, tok.convert_tokens_to_ids("555"))
    report = pair_reading(turn_only, root)
    assert report["same_rule"]["judge"] == 1.0 and report["same_turn"]["judge"] == 0.5
    question_only = keyword_predictor()  # fires on the phone rule after "How do I contact Sam?", whatever the answer
    question_only.model = KeywordJudge(tok.convert_tokens_to_ids("phone"), tok.convert_tokens_to_ids("contact"))
    report = pair_reading(question_only, root)
    assert report["same_question"]["judge"] == 0.5 and report["any"]["judge"] > 0.5
    assert json.loads(json.dumps(report)) == report


def test_a_pairs_logit_does_not_depend_on_the_pairs_scored_beside_it(tmp_path):
    """A verdict must not change with what else is in the batch: the saved judge scores in float. (With torch's
    int8 dynamic quantisation the activations' scale is taken over the whole padded batch, and the shipped
    judge's logit for one pair moved from -0.17 alone to -1.77 beside three others.)"""
    from transformers import AutoModelForSequenceClassification

    from csrm.model.rule.modeling import Pair, pair_logits

    path = tiny_backbone(tmp_path / "tiny", init_range=0.5)
    judge = RulePredictor(AutoModelForSequenceClassification.from_pretrained(str(path)),
                          PairEncoder(AutoTokenizer.from_pretrained(str(path))), RuleJudgeArgs())
    pair = Pair(PHONE_RULE, "How do I reach Sam?", "Sam's number is 555 0199.")
    beside = [Pair(rule, "Hello", BENIGN * k) for k, rule in enumerate(
        ["Do not discuss the weather.", "Never recommend a competitor.", "Always greet the user politely."], 1)]
    alone = pair_logits(judge.model, judge.encoder, [pair])[0]
    batched = pair_logits(judge.model, judge.encoder, [pair, *beside])[0]
    assert alone == pytest.approx(batched, abs=1e-4)
