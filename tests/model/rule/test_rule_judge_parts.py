"""The rule judge's parts: row parsing, pair encoding (nothing truncated), narrowing and the OR."""

from __future__ import annotations

import json

import numpy as np
import pytest
from rule_judge_fixtures import PHONE_RULE, rows
from transformers import AutoTokenizer

from csrm.base.errors import InputError
from csrm.base.paths import default_backbone
from csrm.model.rule.aggregation import Calibration, best_f1_threshold, combine, fit_calibration
from csrm.model.rule.candidates import applies_everywhere, select
from csrm.model.rule.conditions import cannot_apply, topic_terms
from csrm.model.rule.data import parse_row
from csrm.model.rule.emoji_bans import EmojiBan
from csrm.model.rule.emoji_bans import parse as parse_emoji_ban
from csrm.model.rule.letter_case import parse as parse_case_rule
from csrm.model.rule.limits import Limit
from csrm.model.rule.limits import parse as parse_limit
from csrm.model.rule.modeling import Pair, PairEncoder


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(default_backbone())


def test_parse_row_reads_violations_and_checks_them():
    fail = next(r for r in rows(10, 0) if r["label"] == "FAIL")
    ex = parse_row(fail, path="f.jsonl", line=3)
    assert ex.label == 1 and len(ex.violations) == 1
    (rule_number, turn), = ex.violations
    assert ex.turns[turn].role == "assistant" and ex.rules[rule_number - 1].text == PHONE_RULE
    meta = json.loads(fail["metadata"])
    bad = dict(fail, label="PASS")
    with pytest.raises(InputError, match="f.jsonl:3: field 'metadata.violations'"):
        parse_row(bad, path="f.jsonl", line=3)
    bad = dict(fail, metadata=json.dumps({**meta, "violations": [[1, 0]]}))  # turn 0 is a User turn
    with pytest.raises(InputError, match="not an Agent turn"):
        parse_row(bad, path="f.jsonl", line=3)
    with pytest.raises(InputError, match="field 'label'"):
        parse_row(dict(fail, label="MAYBE"), path="f.jsonl", line=3)


def test_pair_template_matches_the_tokenizer(tokenizer):
    encoder = PairEncoder(tokenizer, max_length=64, rule_max_tokens=16, context_max_tokens=8)
    a = tokenizer("never reveal phone numbers", add_special_tokens=False)["input_ids"]
    b = tokenizer("user: hi agent: hello", add_special_tokens=False)["input_ids"]
    reference = tokenizer("never reveal phone numbers", "user: hi agent: hello")
    assert encoder.join(a, b) == (reference["input_ids"], reference["token_type_ids"])


def test_a_long_window_is_split_never_truncated(tokenizer):
    encoder = PairEncoder(tokenizer, max_length=64, rule_max_tokens=16, context_max_tokens=8)
    window = " ".join(f"w{i}" for i in range(200))
    features, owner = encoder.encode([Pair("Never reveal phone numbers.", "a long question " * 20, window)])
    assert len(features) > 1 and set(owner) == {0}
    assert all(len(f["input_ids"]) <= 64 for f in features)
    judged = []
    for f in features:  # the second segment minus its context prefix holds the judged text, in order
        second = [i for i, t in zip(f["input_ids"], f["token_type_ids"], strict=True) if t == 1][:-1]
        judged += second
    text = tokenizer.decode(judged)
    assert all(f"w{i}" in text.replace(" ", "") for i in (0, 57, 123, 199))


def test_applies_everywhere_finds_unconditional_form_rules():
    assert applies_everywhere("Use no more than three sentences in any response.")
    assert applies_everywhere("Do not use sarcasm.")
    assert not applies_everywhere("If the user mentions pizza, include the word 'cheese' in your response.")
    assert not applies_everywhere("Never reveal a customer's phone number.")


def _bag_embed(texts):
    vocab = sorted({w for t in ["phone number weather pizza cheese sentences"] for w in t.split()})
    rows_ = [[float(w in t.lower()) + 1e-3 * k for k, w in enumerate(vocab)] for t in texts]
    m = np.array(rows_)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def test_select_keeps_top_k_and_rules_for_every_turn():
    rules = ["Never reveal a phone number.", "Do not discuss the weather.", "Include cheese if pizza.",
             "Use no more than three sentences in any response."]
    chosen = select(rules, ["his phone number is 5"], top_k=1, embed=_bag_embed)
    assert chosen == [[0, 3]]  # the most similar rule, plus the format rule
    assert select(rules, ["x"], top_k=4, embed=_bag_embed) == [[0, 1, 2, 3]]  # nothing to narrow
    assert select(rules, ["x", "y"], top_k=1, embed=None) == [[0, 1, 2, 3]] * 2


@pytest.mark.parametrize("method", ["max", "softmax"])
def test_or_does_not_drift_with_repetition_and_keeps_one_violation(method):
    benign = [-3.0, -2.5, -3.2]
    once, _ = combine(benign, method=method)
    many, _ = combine(benign * 50, method=method)
    assert abs(once - many) < 1e-9
    score, top = combine(benign * 50 + [4.0] + benign * 50, method=method)
    assert top == 150 and score > 4.0 - 0.5 * np.log(301) - 1e-9 and score > once + 3


def test_calibration_and_threshold():
    scores = [-3, -2, -1, 0.5, 1, 2, 3, -0.5]
    labels = [0, 0, 0, 1, 1, 1, 1, 0]
    cal = fit_calibration(scores, labels)
    assert cal.scale > 0 and cal(3) > 0.9 and cal(-3) < 0.1
    assert fit_calibration([1, 2], [1, 1]) == Calibration()
    reversed_ = fit_calibration([-s for s in scores], labels)  # higher logits on the benign items: not inverted
    assert reversed_.scale == 0 and reversed_(-3) == reversed_(3) == pytest.approx(sum(labels) / len(labels))
    assert best_f1_threshold([0.1, 0.2, 0.7, 0.9], [0, 0, 1, 1]) == 0.7


def test_select_reads_the_context_for_conditional_rules():
    rules = ["Include cheese if the user mentions pizza.", "Never reveal a phone number.", "Do not discuss weather.",
             "Use no more than three sentences in any response."]
    without = select(rules, ["ok sure"], top_k=1, embed=_bag_embed)
    with_context = select(rules, ["ok sure"], top_k=1, embed=_bag_embed, contexts=["I love pizza"])
    assert 0 not in without[0] and 0 in with_context[0]


def test_a_rule_on_a_rare_topic_cannot_apply_until_the_user_raises_it():
    sfumato = "When the user inquires about the sfumato technique, describe it as imperceptible transitions."
    assert topic_terms(sfumato) == ("sfumato",)
    assert cannot_apply(sfumato, "Tell me about trekking in Nepal.")
    assert not cannot_apply(sfumato, "How did Leonardo use SFUMATO?")  # any case
    tail = "Recommend ceramic foam filters if the user asks about gating systems for magnesium castings."
    assert topic_terms(tail) and not cannot_apply(tail, "My casting has inclusions.")  # first five letters
    assert cannot_apply(tail, "Where is my order?")
    # a common word sharing the first five letters is no inflection of a rare term: "contact" is not "contaminant"
    water = "If the user asks about Maximum Contaminant Levels for arsenic, state that MCLs are enforceable."
    assert cannot_apply(water, "Who is the best contact for sales inquiries?")
    assert not cannot_apply(water, "Which contaminants does the SDWA regulate?")
    # a condition in common words names no topic precisely enough: the cross-encoder reads it, never the gate
    for rule in ("If a user repeats or rephrases the same message 3 times, give them the support link.",
                 "When employee information is requested by a user external to the company, refuse.",
                 "Never use the word sfumato.", ""):  # and an unconditional rule, however rare its words
        assert not cannot_apply(rule, "Where is my order?"), rule


def test_a_quoted_name_is_a_topic_however_common_its_words():
    """'Survivor 18' holds no rare word; quoted, it names the topic (function words and numbers aside)."""
    survivor = ("If the user asks about the fan reaction to a specific controversial elimination on 'Survivor 18', "
                "mention online fan communities.")
    assert topic_terms(survivor) == ("survivor",)
    assert cannot_apply(survivor, "Is Leticia at the Denver office? Her GPS shows 39.7392, -104.9903.")
    assert not cannot_apply(survivor, "Who got voted out on survivor last night?")
    book = 'If the user references the textbook "transport phenomena" by the usual authors, cite its chapter.'
    assert topic_terms(book) == ("phenomena", "transport")
    # the apostrophe of a possessive opens no quotation; quotes outside the condition name nothing
    assert topic_terms("If the user inquires about Elias's concept of civility, explain it.") == ("elias",)
    assert topic_terms('Include the word "punk" when the user mentions The Clash.') == ("clash",)


def test_a_capitalised_name_is_a_topic_however_common_its_words():
    """"The Clash", "David Lynch", "NEC Article 250": names in common words, capitalised by the condition. Before,
    such rules had no term to check and fired on transcripts about employees' whereabouts."""
    lynch = ("If the user discusses genre blending in the films of David Lynch, specifically the mix of horror and "
             "noir, characterize his style as dreamlike.")
    assert topic_terms(lynch) == ("lynch",)  # "david" (Zipf 5.1) names nobody on its own
    assert cannot_apply(lynch, "Where is Leticia right now? I need her GPS coordinates.")
    assert not cannot_apply(lynch, "I just rewatched Mulholland Drive. Lynch mixes so many genres!")
    assert topic_terms("When The Killers are mentioned, say that Brandon Flowers sings.") == ("killers",)
    nec = "In the case that the user discusses the design of grounding systems according to NEC Article 250, be exact."
    assert topic_terms(nec) == ("nec",)
    # a common word of a name is no topic: the user would "love" an answer in any transcript
    showmance = "If the user discusses a 'Love Island' or 'Big Brother' showmance, call it a showmance."
    assert topic_terms(showmance) == ("showmance",)
    assert cannot_apply(showmance, "I'd love to know where Leticia is. Is she with her brother?")
    # a condition in title case or capitals names nothing by its capitals: every word would be a "name"
    assert topic_terms("If The Customer Asks About Refunds, apologise first.") == ()
    assert topic_terms("IF THE USER ASKS ABOUT A REFUND, APOLOGISE FIRST.") == ()


def test_a_clause_that_narrows_the_condition_is_part_of_it_an_example_is_not():
    """"..., specifically comparing RYGB with sleeve gastrectomy, do ..." narrows the condition; "..., for example
    U-matic tapes, do ..." illustrates it, and the user may raise the topic without the example."""
    surgery = ("If the user asks about the different surgical options for morbid obesity, specifically comparing "
               "Roux-en-Y gastric bypass (RYGB) versus sleeve gastrectomy, do the following: frame the comparison.")
    assert topic_terms(surgery) == ("gastrectomy", "roux", "rygb")
    assert cannot_apply(surgery, "Where was Leticia at 3pm? I need her GPS location.")
    assert not cannot_apply(surgery, "Are sleeve gastrectomies safer than a bypass?")  # one stem
    video = ("If the user inquires about the conservation challenges specific to early video art, for example the "
             "degradation of magnetic tape formats (e.g., U-matic, VHS), do the following: mention digital migration.")
    assert topic_terms(video) == ("art", "challenges", "conservation", "early", "video")  # the example's left out


def test_a_later_sentences_condition_does_not_gate_the_rule():
    """DynaBench's Corona rule: its first sentence holds in every turn, its second waits for a question."""
    corona = ("Always refer to your homeworld as Corona. If a guest asks about your spaceship, name its fastest "
              "speed and coolest gadget, then ask them to join your crew on a mission.")
    assert topic_terms(corona) == () and not cannot_apply(corona, "Hello there, who are you?")
    assert topic_terms("Never use slang when the user asks about sfumato.") == ("sfumato",)
    debate = ("Always reference the debate about finale formatting (lip sync vs. individual numbers) if the user "
              "brings up the 'RuPaul's Drag Race' finale.")  # "vs. individual" ends no sentence
    assert topic_terms(debate) == ("drag", "rupaul")


def test_a_subject_named_in_three_uncommon_words_is_a_topic_two_are_not():
    """No rare word or name: three subject words (under Zipf 5.5, not verbs or question words) name a topic the user
    must raise with one of them; one or two are too easily talked around and never gate."""
    video = "If the user inquires about the conservation challenges specific to early video art, mention migration."
    assert cannot_apply(video, "Where was Leticia at 3pm? I need her GPS location.")
    assert not cannot_apply(video, "How do museums conserve old installations?")  # one stem: "conserv"
    salaries = "If the user asks about employee salaries, refuse to answer."
    assert topic_terms(salaries) == () and not cannot_apply(salaries, "What does John earn?")
    account = "If the user asks a question about information on their account details, verify them first."
    assert topic_terms(account) == ()  # "question", "information", "details" say that something is asked


@pytest.mark.parametrize("rule", [
    "If the user does not mention Zyrtec, never recommend antihistamines.",
    "When the user has not asked about sfumato, avoid art history.",
    "If the user never mentions Nishimura, do not reveal his schedule.",
    "If the user asks about anything other than sfumato, decline politely.",
    "If the user asks about topics unrelated to QUAL2K, redirect them.",
    "Except when the user mentions sfumato, avoid painting techniques.",
])
def test_a_condition_met_by_the_topics_absence_is_never_a_gate(rule):
    """These apply exactly while the topic is unsaid; gating them on its absence dropped the rule there."""
    assert topic_terms(rule) == () and not cannot_apply(rule, "Can you help me with allergies?")


def test_select_never_keeps_a_rule_that_cannot_apply_and_gives_its_place_to_the_next():
    rules = ["Never reveal a phone number.", "Do not discuss the weather.", "Include cheese if pizza.",
             "Use no more than three sentences in any response.", "Say hello."]
    chosen = select(rules, ["his phone number is 5"], top_k=1, embed=_bag_embed, excluded=[{0, 3}])
    assert len(chosen[0]) == 1 and not {0, 3} & set(chosen[0])
    assert select(rules[:2], ["x"], top_k=4, embed=None, excluded=[{1}]) == [[0]]  # nothing to narrow, still gated
    with pytest.raises(ValueError, match="exclusion sets"):
        select(rules, ["x"], top_k=1, embed=None, excluded=[set(), set()])


@pytest.mark.parametrize(("rule", "limit"), [
    ("Write at least two words in every conversation.", Limit("words", 2, None)),
    ("Your response must be less than 300 words.", Limit("words", 0, 299)),
    ("Never use more than 50 words.", Limit("words", 0, 50)),  # a negation flips the relation
    ("Do not exceed 40 words in a reply.", Limit("words", 0, 40)),
    ("Use no more than three sentences in any response.", Limit("sentences", 0, 3)),
    ("Keep every answer under 12 characters.", Limit("characters", 0, 11)),
    # every negation of csrm.model.rule.wording flips it ("No ... more than 50" was once read as "at least 51")
    ("No reply should have more than 50 words.", Limit("words", 0, 50)),
    ("Refrain from using more than 3 sentences.", Limit("sentences", 0, 3)),
    ("Answer without using more than 40 words.", Limit("words", 0, 40)),
    # more than a length limit, a condition, or a keyword count: left to the cross-encoder
    ("Include the word story at least twice.", None),
    ("Use at least 800 words and mention cats.", None),
    ("If the user asks about pizza, use at most 20 words.", None),
    ("Your answer must contain a title and be at least 100 words.", None),
    ("Exceed 50 words.", None),
    ("Keep responses under 100 words where possible.", None),
])
def test_a_rule_that_is_only_a_length_limit_is_read_as_one(rule, limit):
    assert parse_limit(rule) == limit


def test_limits_count_words_as_ifeval_does_and_forgive_one_sentence():
    assert parse_limit("Write at least two words in every response.").broken_by("Sure.")
    assert not parse_limit("Write at least two words in every response.").broken_by("Sure, thing!")
    assert parse_limit("Write at least two words in every response.").describe("Sure.") == (
        "1 word; the rule asks for at least 2")
    three = parse_limit("Use no more than three sentences in any response.")
    assert three.count("Dr. Smith is in. He waits! Ok? Yes.") == 5  # "Dr." ends a sentence: hence the slack
    assert not three.broken_by("One. Two. Three. Four.") and three.broken_by("One. Two. Three. Four. Five.")


@pytest.mark.parametrize(("rule", "ban"), [
    ("Never use emojis.", EmojiBan()),
    ("Keep emoji out of every message.", EmojiBan()),
    ("Replies must be plain text without emoji.", EmojiBan()),
    ("Avoid emoji in all replies to customers.", EmojiBan()),
    ("Do not use a single emoji.", EmojiBan()),
    ("Do not use the stop sign emoji.", EmojiBan(frozenset({"\U0001F6D1"}))),  # named by its Unicode short name
    ("Never use the red heart emoji.", EmojiBan(frozenset({"\u2764"}))),  # without its variation selector
    # more than a ban, a condition, a request for emoji, or a name Unicode does not know: left to the cross-encoder
    ("Never use emojis or slang.", None),
    ("If the user is a child, never use emojis.", None),
    ("Use emojis to keep a friendly tone.", None),
    ("Do not use the flux capacitor emoji.", None),
])
def test_a_rule_that_is_only_an_emoji_ban_is_read_as_one(rule, ban):
    assert parse_emoji_ban(rule) == ban


def test_emoji_bans_find_emoji_the_tokenizer_cannot_see():
    every, stop = parse_emoji_ban("Never use emojis."), parse_emoji_ban("Do not use the stop sign emoji.")
    assert every.broken_by("Happy to help \U0001F389") and every.broken_by("Thanks \u2764\ufe0f")
    assert every.broken_by("Nice \U0001F44D\U0001F3FD")  # a skin-tone sequence is one emoji
    assert not every.broken_by("Order ref \u2122 2231, \u00a9 2024, shipped to \u5317\u4eac.")  # marks, CJK
    assert every.describe("Great \U0001F389 see you \U0001F389 \U0001F60A") == (
        "3 emoji (\U0001F389 \U0001F60A); the rule allows none")
    assert stop.broken_by("Stop \U0001F6D1 here") and not stop.broken_by("Party \U0001F389")
    assert stop.describe("Stop \U0001F6D1") == "uses \U0001F6D1, which the rule forbids"


def test_emoji_bans_agree_with_the_generated_conduct_labels():
    """Every emoji-ban wording of the conduct family is read as a ban, and the ban gives the generator's label on
    its violating lines and near misses ("You can add an emoji reaction ...")."""
    from augmentation.rules import conduct
    from augmentation.rules.core import Transcript
    from csrm.base.rule_text import Turn

    kind = conduct.KINDS["emoji"]
    assert all(parse_emoji_ban(text) == EmojiBan() for text in kind.rules.texts)
    lines = [f"Happy to help {e}" for e in conduct.EMOJIS] + list(kind.near)
    for line in lines:
        tr = Transcript([Turn("user", "Hi"), Turn("assistant", line)], topics=[frozenset(), frozenset()])
        assert parse_emoji_ban("Never use emojis.").broken_by(line) == bool(conduct.breaks("emoji", tr))
    assert sum(parse_emoji_ban("Never use emojis.").broken_by(line) for line in lines) == len(conduct.EMOJIS)


@pytest.mark.parametrize(("rule", "kind"), [
    ("Your entire response should be in English, and in all capital letters.", "capitals"),
    ("Reply in English and capitalize all your words.", "capitals"),
    ("Your response must be in all capital letters, no lowercase letters allowed.", "capitals"),
    ("Do not use lowercase letters.", "capitals"),  # no lower-case letter at all
    ("Use all lowercase letters.", "lowercase"),
    ("It should be in English, and no capital letters are allowed.", "lowercase"),
    ("Do not use capital letters.", "lowercase"),  # no capital at all: not the ban on shouting below
    ("Make sure that it's in English and not a single letter in your entire response is capitalized whatsoever.",
     "lowercase"),
    ("Do not write in all capital letters.", "no_shouting"),
    ("Never shout at the user in capitals.", "no_shouting"),
    ("No all-caps sentences, please.", "no_shouting"),
    ("Never start the first word in a conversation with a lowercase letter.", "capital_start"),
    ("Always begin your response with a capital letter.", "capital_start"),
    ("Start every reply with a lowercase letter.", "lowercase_start"),
    ("Do not begin a response with a capital letter.", "lowercase_start"),
    # a count, a condition, more than case: left to the cross-encoder
    ("Use words in all capital letters at least 3 times to highlight key points.", None),
    ("If the user is angry, use all lowercase letters.", None),
    ("Use lowercase letters and mention cats.", None),
    ("Do not shout at customers.", None),  # a tone: capitals are not named
    ("No response should use lowercase letters only.", None),  # once read as "all lowercase"
    ("Start each sentence with a capital letter.", None),  # every sentence, not the reply's start
    ("Start your reply with a capital letter and mention the weather.", None),
])
def test_a_rule_that_is_only_about_letter_case_is_read_as_one(rule, kind):
    parsed = parse_case_rule(rule)
    assert (parsed.kind if parsed else None) == kind


def test_case_rules_agree_with_the_generators_checkers():
    """The generated labels come from lm-eval's IFEval checkers (lowercase / capitals) and the conduct family's
    shouting pattern; the code check gives the same verdict on the texts the generator writes to keep and to
    break them, and an acronym is not shouting."""
    import random

    from augmentation.rules import conduct, ifeval
    from augmentation.rules.core import Transcript
    from csrm.base.rule_text import Turn

    base = "Your order has shipped, and the courier will call you before delivery on Friday."
    for text in ("Your entire response should be in English, and in all capital letters.",
                 "Your entire response should be in English, and in all lowercase letters."):
        rule, checker = ifeval.parse(text), ifeval.parse(text).checker()
        for satisfy in (True, False):
            reply = ifeval.transform(rule, base, satisfy, random.Random(0))
            assert parse_case_rule(text).broken_by(reply) == (not checker.check_following(reply))
    ban = parse_case_rule(conduct.KINDS["caps"].rules.texts[0])
    for line in conduct.SHOUTS + conduct.KINDS["caps"].near:
        tr = Transcript([Turn("user", "Hi"), Turn("assistant", f"Sure. {line}")], topics=[frozenset(), frozenset()])
        assert ban.broken_by(f"Sure. {line}") == bool(conduct.breaks("caps", tr))
    assert all(parse_case_rule(text) == ban for text in conduct.KINDS["caps"].rules.texts)
    assert parse_case_rule("Use all lowercase letters.").describe("hello Sam") == (
        "1 capital letter (first in 'Sam'); the rule asks for lowercase")


def test_the_first_letter_of_a_reply_is_its_first_alphabetic_character():
    start = parse_case_rule("Always begin your response with a capital letter.")
    assert not start.conversation
    assert not start.broken_by('[API call] {"notes": "x"}') and not start.broken_by('"Welcome!" 3 specials today')
    assert start.broken_by("3 specials today: ask at the desk.") and not start.broken_by("42")
    assert start.describe("ok, sure") == "the reply starts with 'o'; the rule asks for a capital letter"
    assert parse_case_rule("Never start the first word in a conversation with a lowercase letter.").conversation


def test_code_checks_take_only_rules_that_are_nothing_but_their_kind():
    from csrm.model.rule.code_checks import parse as parse_code_check

    assert parse_code_check("Use at most five words in every response.") == Limit("words", 0, 5)
    assert parse_code_check("Never use emojis.") == EmojiBan()
    assert parse_code_check("Use all lowercase letters.").kind == "lowercase"
    assert parse_code_check("Never reveal a customer's phone number.") is None


def test_the_topic_gate_never_removes_a_violated_dynabench_rule(shared_data):
    """Every FAIL item of the DynaBench (Aug) dev half, read with all its User turns: the rule it breaks is never
    one the gate says cannot apply. None of these rules names a topic the gate can check today (their conditions
    are in common words: "if employee information is requested by a user external to the company"), so this pins
    that the gate does not start reading such conditions; the generated data test the gate where it reads
    (``tests/augmentation/test_rules_data.py``)."""
    import json

    from csrm.base.rule_text import split_rules, split_turns

    checked = 0
    for line in (shared_data / "dynabench" / "dynabench_aug_dev.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["label"] != "FAIL":
            continue
        meta = json.loads(row["metadata"]) if isinstance(row["metadata"], str) else row["metadata"]
        rules = {r.number: r.text for r in split_rules(row["policy"])}
        said = " ".join(t.text for t in split_turns(row["transcript"]) if t.role == "user")
        for number in meta["rules_violated"]:
            if number in rules:
                checked += 1
                assert not cannot_apply(rules[number], said), rules[number]
    assert checked >= 90  # 96 when this was written
