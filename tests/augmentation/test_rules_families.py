"""Rule families of augmentation.rules: every check labels by code what its rule says (truth tables, value
present/absent, IFEval checker agreement, topic labels)."""

from __future__ import annotations

import json
import random

import pytest

from augmentation.rules import disclosure, ifeval, obligation, topic
from augmentation.rules.core import SPLITS, Transcript, Wordings
from augmentation.rules.dialogue import scaffold
from augmentation.rules.values import ValueBank
from csrm.base.rule_text import Turn


def _tr(*pairs: str, secrets: dict | None = None, topics: list | None = None) -> Transcript:
    turns = [Turn("user" if k % 2 == 0 else "assistant", text) for k, text in enumerate(pairs)]
    return Transcript(turns, secrets or {}, topics or [frozenset({"domain:bank"})] * len(turns), "bank")


@pytest.mark.parametrize(("user", "agent", "violates"), [
    ("I love jazz.", "Here you go. Remember the word: falcon.", False),   # condition met, obligation met
    ("I love jazz.", "Here you go.", True),                               # condition met, obligation not met
    ("Hello there.", "Here you go. falcon!", False),                      # condition not met, obligation met
    ("Hello there.", "Here you go, jazz fans.", False),                   # not met (Y only in the Agent turn)
])
def test_obligation_truth_table(user: str, agent: str, violates: bool):
    rule = obligation.rule(random.Random(0), "train", "jazz", "word", "falcon")
    assert rule.check(_tr(user, agent)) == ([1] if violates else [])
    assert "jazz" in rule.text and "falcon" in rule.text


def test_obligation_answers_only_the_mentioning_message():
    rule = obligation.rule(random.Random(0), "train", "jazz", "word", "falcon")
    tr = _tr("I love jazz.", "Noted, falcon.", "And the fees?", "The fee is $5.", "jazz again", "Sure.")
    assert rule.check(tr) == [5]


def test_disclosure_value_present_or_absent_and_conditions():
    rng = random.Random(0)
    plain = disclosure.rule(rng, "train", "plain", ["phone"])
    secrets = {"phone": {"(555) 010-2233"}, "email": {"a.b@example.org"}}
    assert plain.check(_tr("Number?", "Call (555) 010-2233.", secrets=secrets)) == [1]
    assert plain.check(_tr("Number?", "I can't share her phone number.", secrets=secrets)) == []
    # the User stating the value is not a disclosure by the Agent
    assert plain.check(_tr("Mine is (555) 010-2233.", "Thanks, noted.", secrets=secrets)) == []
    fields = disclosure.rule(rng, "train", "fields", ["phone"], ["email"])
    assert fields.check(_tr("Email?", "Write to a.b@example.org.", secrets=secrets)) == []
    verified = disclosure.rule(rng, "train", "verified", ["phone"])
    before = _tr("Number?", "Call (555) 010-2233.", "My PIN is 1234.", "Thanks, your identity is now verified.",
                 secrets=secrets)
    after = _tr("My PIN is 1234.", "Thanks, your identity is now verified.", "Number?", "Call (555) 010-2233.",
                secrets=secrets)
    assert verified.check(before) == [1] and verified.check(after) == []
    assert plain.check(after) == [3]  # the unconditional rule is broken by the same transcript


def test_disclosure_bases_flip_on_the_planted_turn():
    """Each base breaks its rule in one Agent turn and the compliant twin does not; in most of them both were asked
    the same question (only the answer tells the label), and some volunteer the value unasked after an answer to
    something else (the length test's buried sentence)."""
    bank = ValueBank(0)
    made = same_question = volunteered = 0
    for k in range(80):
        rng = random.Random(k)
        base = disclosure.make_base(rng, bank, "train", scaffold(rng, bank, "train"))
        if base is None:
            continue
        target, fail, ok, variant = base
        made += 1
        assert len(target.check(fail)) == 1 and target.check(ok) == []
        pos = target.check(fail)[0]
        assert fail.turns[pos].role == "assistant"
        if ok.turns[pos - 1] == fail.turns[pos - 1]:  # asked the same question: only the answer differs
            same_question += 1
            assert ok.turns[pos] != fail.turns[pos]
        if "volunteered" in variant:  # nobody asked for it: an aside after the answer to something else
            volunteered += 1
            assert any(f"{opener} " in fail.turns[pos].text for opener in disclosure.ASIDE_OPENERS)
            assert not fail.turns[pos].text.startswith(disclosure.ASIDE_OPENERS)
    assert made >= 60
    assert same_question >= made // 2  # the rule and the question alone do not tell the label
    assert volunteered >= made // 8


def test_obligation_bases_cover_the_truth_table():
    """Bases come out as intended (the generator drops the rare one that does not, e.g. when the required word
    already sits in the scaffold), and the compliant side covers all three PASS cells."""
    bank, cells, verified = ValueBank(1), set(), 0
    for k in range(60):
        rng = random.Random(k)
        target, fail, ok, cell = obligation.make_base(rng, bank, "train", scaffold(rng, bank, "train"))
        if target.check(fail) and not target.check(ok):
            verified += 1
            cells.add(cell)
            if cell == "cond+oblig":  # the very message that broke it, answered with Z: only the answer differs
                pos = target.check(fail)[0]
                assert ok.turns[pos - 1] == fail.turns[pos - 1] and ok.turns[pos] != fail.turns[pos]
    assert verified >= 55
    assert {"cond+oblig", "nocond+oblig", "nocond_agent_mentions", "earlier_mention"} <= cells


def test_topic_checks_follow_content_labels():
    family = topic.Family([topic.Item("a fight broke out and he was hurt", frozenset({"violence"}), "what happened?"),
                           topic.Item("lovely weather today", frozenset(), "")])
    rng = random.Random(0)
    avoid = family.rule(rng, "train", "avoid", "violence")
    only = family.rule(rng, "train", "only", "bank")
    tr = _tr("q", "a fight broke out", "q", "your balance is fine",
             topics=[frozenset(), frozenset({"violence"}), frozenset(), frozenset({"domain:bank"})])
    assert avoid.check(tr) == [1] and only.check(tr) == [1]
    calm = _tr("q", "your balance is fine", topics=[frozenset(), frozenset({"domain:bank"})])
    assert avoid.check(calm) == [] and only.check(calm) == []
    assert "violence" not in avoid.text.lower() or "violent" in avoid.text.lower()  # free wording, not a label


RULES = ["Do not use any commas in your response.", "Your entire response should be in English, and in all "
         "lowercase letters.", 'Do not include the words "cheap" or "deal".', 'Include the keywords "river" and '
         '"stone".', "The word banana should appear at least 3 times.", "Answer with at least 60 words.",
         "Answer with less than 12 words.", "At the end of your response, add a postscript starting with P.S.",
         "Wrap your title in double angular brackets, such as <<my title>>.",
         "Your answer must contain exactly 3 bullet points.", "Include at least 2 placeholders in square brackets.",
         "Highlight at least 2 sections with markdown.", "Wrap your entire response with double quotation marks.",
         'Finish your response with this exact phrase: "Is that all?". No other words should follow.',
         "Wrap the whole output in JSON format.", "Your response must be less than 10 sentences and no commas."]


def test_ifeval_rules_parse_and_agree_with_lm_eval_checkers(tmp_path):
    from lm_eval.tasks.ifeval.instructions_registry import INSTRUCTION_DICT

    path = tmp_path / "rules.jsonl"
    path.write_text(json.dumps({"rules": "\n".join(f"{i + 1}. {r}" for i, r in enumerate(RULES)), "key": 1}) + "\n")
    rules = ifeval.load_rules(path)
    # the compound last rule is left out: its sentence count has no checker here
    assert [r.text for r in rules] == RULES[:-1]
    assert ifeval.parse("Words with all capital letters should appear at least 3 times.") is None
    assert ifeval.parse("Write a 30-line poem without any commas.") is None
    # "doesn't" is a negation: these keywords are forbidden, not required (read as required before 2026-12-07)
    assert ifeval.parse('Doesn\'t include the keywords "Yo", "check", and "peace".').instruction == "keywords:forbidden_words"
    family = ifeval.Family(rules)
    text = "Your transfer went through on Monday, and the balance is updated. Let me know if you need more."
    for rule in rules:
        fresh = INSTRUCTION_DICT[rule.instruction](rule.instruction)
        fresh.build_description(**dict(rule.kwargs))
        good = ifeval.transform(rule, text, True, random.Random(0))
        bad = ifeval.transform(rule, text, False, random.Random(0))
        assert fresh.check_following(good), (rule.text, good)
        assert not fresh.check_following(bad), (rule.text, bad)
        item = family.item(rule)
        assert item.check(_tr("hi", good)) == [] and item.check(_tr("hi", bad)) == [1]


def test_wordings_are_split_disjoint():
    words = Wordings("x", [f"w{i}" for i in range(10)])
    ids = [{i for i, _ in words.by_split[s]} for s in SPLITS]
    assert all(ids) and not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert sum(map(len, ids)) == 10


def test_value_bank_never_shares_a_value_across_splits():
    bank = ValueBank(0)
    drawn = {s: {bank.value("salary", s) for _ in range(150)} for s in SPLITS}
    assert not (drawn["train"] & drawn["test"] or drawn["train"] & drawn["dev"] or drawn["dev"] & drawn["test"])


def test_long_form_rules_keep_the_check_and_read_back():
    from augmentation.rules.elaborate import BULLETS, REASONS, SCOPES, elaborate, elaborate_some
    from augmentation.rules.policy import make_row

    rng = random.Random(3)
    short = obligation.rule(rng, "train", "gardening", "word", "partner")
    fail = Transcript([Turn("user", "I love gardening."), Turn("assistant", "Great, how can I help?")])
    ok = Transcript([Turn("user", "I love gardening."), Turn("assistant", "Great, partner, how can I help?")])
    for seed in range(30):
        long = elaborate(short, random.Random(seed), "test")
        assert len(long.text) > len(short.text) and short.text[1:] in long.text
        assert (long.key, long.subjects, long.check(fail), long.check(ok)) == (
            short.key, short.subjects, [1], [])
        row = make_row([long], fail, family="obligation", contrast="original", base_id="b", split="test",
                       target=long, variant="v", blank_line=False)  # raises unless the policy reads back
        assert row["label"] == "FAIL"
        phrases = [t for w in (SCOPES, REASONS, BULLETS) for t in w.texts if t.split(":")[0] in long.text]
        assert phrases and all(w.split_of[w.ids[w.texts.index(t)]] != "train"
                               for w in (SCOPES, REASONS, BULLETS) for t in phrases if t in w.texts)
    assert elaborate_some([short] * 5, 0.0, rng, "train") == [short] * 5


@pytest.mark.parametrize("agent, kind, broken", [
    ("Sure. That's not my problem.", "rude", True), ("I completely understand, and I'm happy to help with that.",
                                                      "rude", False),
    ("Happy to help 😊", "emoji", True), ("You can add an emoji reaction to messages in the app.", "emoji", False),
    ("PLEASE CHECK YOUR EMAIL FOR THE CONFIRMATION.", "caps", True), ("Your PIN and the IBAN are in the app.",
                                                                       "caps", False),
    ("You could also try Acme Ltd, they are cheaper.", "competitor", True),
    ("Our own premium plan might suit you better.", "competitor", False),
    ("I promise the parcel will arrive tomorrow.", "promise", True),
    ("I can't promise a date, but I'll pass your request to the right team.", "promise", False),
    ("Hello, how can I help?", "intro", True), ("Hello! I'm a virtual assistant.", "intro", False),
    ("Done.", "signoff", True), ("Done. Is there anything else I can help you with?", "signoff", False),
])
def test_conduct_checks(agent: str, kind: str, broken: bool):
    from augmentation.rules.conduct import breaks

    tr = Transcript([Turn("user", "Hi, a question about my order."), Turn("assistant", agent)])
    assert breaks(kind, tr) == ([1] if broken else [])


def test_conduct_bases_flip_on_the_planted_or_missing_turn():
    from augmentation.rules import conduct

    bank, seen = ValueBank(0), set()
    for k in range(80):
        rng = random.Random(k)
        base = conduct.make_base(rng, bank, "train", scaffold(rng, bank, "train"))
        target, fail, ok, variant = base
        assert target.check(fail) and not target.check(ok), variant
        seen.add(variant.split("/")[0])
    assert seen == set(conduct.KINDS)


def test_case_dependent_lists_only_rules_whose_verdict_needs_letter_case():
    from augmentation.rules import conduct
    from augmentation.rules.policy import case_dependent, make_row

    rng = random.Random(0)
    caps, rude = conduct.rule(rng, "train", "caps"), conduct.rule(rng, "train", "rude")
    shouting = Transcript([Turn("user", "Hi"), Turn("assistant", "PLEASE CHECK YOUR EMAIL FOR THE CONFIRMATION.")])
    rude_in_capitals = Transcript([Turn("user", "Hi"), Turn("assistant", "SURE. THAT'S NOT MY PROBLEM.")])
    assert case_dependent([rude, caps], shouting) == [2]  # lower-cased, the shouting is gone
    assert rude.check(rude_in_capitals) == [1]            # a rude line is rude in any case ...
    assert case_dependent([rude], rude_in_capitals) == []  # ... so its verdict does not depend on case
    row = make_row([rude, caps], shouting, family="conduct", contrast="original", base_id="b", split="train",
                   target=caps, variant="caps/clean", blank_line=False)
    assert row["label"] == "FAIL" and row["metadata"]["case_dependent"] == [2]


def test_history_dependent_lists_pairs_whose_verdict_needs_earlier_turns():
    from augmentation.rules import conduct
    from augmentation.rules.policy import history_dependent

    rng = random.Random(0)
    verified = disclosure.rule(rng, "train", "verified", ["phone"], [])
    intro = conduct.rule(rng, "train", "intro")
    number = "+1 555 0199"
    tr = _tr("I'd like my account details.", "Thanks, your identity is now verified. How can I help?",
             "What phone number do you have for me?", f"We have {number} on file.", secrets={"phone": {number}})
    assert verified.check(tr) == [] and intro.check(tr) == [1]
    # the reveal at turn 3 is fine only because turn 1 verified the user; the intro rule binds the first reply only
    assert history_dependent([verified, intro], tr) == [[1, 3], [2, 3]]
    alone = _tr("What phone number do you have for me?", f"We have {number} on file.", secrets={"phone": {number}})
    assert history_dependent([verified], alone) == []  # the pair shows all the rule needs
