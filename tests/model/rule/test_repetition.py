"""Repetition triggers (csrm.model.rule.repetition): which wordings are read as one, how the same message is
counted over the User turns, and which reply breaks the rule."""

from __future__ import annotations

import re

import numpy as np
import pytest

from csrm.base.rule_text import Turn
from csrm.model.rule.code_checks import parse as parse_code_check
from csrm.model.rule.repetition import RepetitionTrigger, parse
from csrm.model.sentence_embedder import SentenceEmbedder

ESCALATE = "Let me connect you with a human agent."


@pytest.mark.parametrize(("rule", "trigger"), [
    ('If a user repeats or rephrases the same message 3 times, immediately respond with "Sorry for the '
     'misunderstanding. Click here for a representative: www.example.com/help."',
     RepetitionTrigger(3, "Sorry for the misunderstanding. Click here for a representative: www.example.com/help.")),
    (f'When the customer asks the same question twice, reply with "{ESCALATE}"', RepetitionTrigger(2, ESCALATE)),
    (f'If a user sends the same request three times in a row, respond with the following message: "{ESCALATE}"',
     RepetitionTrigger(3, ESCALATE, consecutive=True)),
    (f"If the user repeats their question 3 or more times, say \u201c{ESCALATE}\u201d", RepetitionTrigger(3, ESCALATE)),
    (f'If the user has rephrased the same complaint more than 2 times, respond with "{ESCALATE}"',
     RepetitionTrigger(3, ESCALATE)),
    # anything more than the trigger, or no quoted reply: left to the cross-encoder
    (f'If a user repeats the same message 3 times, respond with "{ESCALATE}" and open a ticket.', None),
    (f'If a user repeats the same message about refunds 3 times, respond with "{ESCALATE}"', None),
    ("If a user repeats the same message 3 times, respond politely.", None),
    (f'If a user asks about pricing, respond with "{ESCALATE}"', None),  # no repetition
    (f'If a user repeats the same message, respond with "{ESCALATE}"', None),  # no count
    ("Never repeat the same message 3 times.", None),
])
def test_a_rule_that_is_only_a_repetition_trigger_is_read_as_one(rule, trigger):
    assert parse(rule) == trigger
    assert parse_code_check(rule) == trigger  # and the predictor's list of code checks finds it


def _bag_embed(texts: list[str]) -> np.ndarray:
    """Word-set vectors: two turns are 'the same message' exactly when they hold the same words."""
    vocab = sorted({w for t in texts for w in re.findall(r"[a-z]+", t.lower())})
    rows = np.array([[w in set(re.findall(r"[a-z]+", t.lower())) for w in vocab] for t in texts], dtype=float)
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-9)


def _dialogue(*lines: str) -> list[Turn]:
    return [Turn("user" if i % 2 == 0 else "assistant", text) for i, text in enumerate(lines)]


def test_the_reply_after_the_nth_time_must_say_the_text():
    rule = RepetitionTrigger(3, ESCALATE)
    turns = _dialogue("I was charged twice", "Sorry, what is your order number?",
                      "I was charged twice", "Can you tell me the order number?",
                      "I was charged twice", "Please send the order number.",  # the third time: no escalation
                      "I was charged twice", ESCALATE)  # a fourth time asks nothing new; a late escalation mends nothing
    assert rule.breaches(turns, _bag_embed) == [
        (5, f'the user sent the same message 3 times (turns 0, 2, 4); the next reply does not say "{ESCALATE}"')]
    kept = turns[:5] + [Turn("assistant", f"I am sorry. {ESCALATE.lower()[:-1]}!")]  # case and final punctuation aside
    assert rule.breaches(kept, _bag_embed) == []
    assert RepetitionTrigger(4, ESCALATE).breaches(turns[:6], _bag_embed) == []  # said three times, not four
    assert rule.breaches(turns[:5], _bag_embed) == []  # no reply yet


def test_the_text_said_before_the_nth_time_breaks_the_rule_too():
    """The scripted reply belongs to the trigger: escalating after the second message is as wrong as not
    escalating after the third (module doc); escalating again at the fourth is not."""
    rule = RepetitionTrigger(3, ESCALATE)
    early = _dialogue("I was charged twice", "Order number?", "I was charged twice", ESCALATE)
    assert rule.breaches(early, _bag_embed) == [
        (3, f'the reply says "{ESCALATE}" after the user sent the same message 2 times; the rule asks for it at '
            "the 3rd time")]
    again = _dialogue("I was charged twice", "Order number?", "I was charged twice", "Order number?",
                      "I was charged twice", ESCALATE, "I was charged twice", ESCALATE)
    assert rule.breaches(again, _bag_embed) == []
    late = _dialogue("I was charged twice", "Order number?", "I was charged twice", "Order number?",
                     "I was charged twice", "Order number?", "Fine, anything else", ESCALATE)
    assert [t for t, _ in rule.breaches(late, _bag_embed)] == [5]  # the missed escalation, not the late one


def test_in_a_row_counts_only_consecutive_user_turns():
    turns = _dialogue("I was charged twice", "Order number?", "Where is my parcel", "Tracking below.",
                      "I was charged twice", "Order number?", "I was charged twice", "Order number?")
    assert RepetitionTrigger(3, ESCALATE).breaches(turns, _bag_embed)[0][0] == 7
    assert RepetitionTrigger(3, ESCALATE, consecutive=True).breaches(turns, _bag_embed) == []


def test_the_sentence_encoder_counts_rephrasings_and_not_follow_up_questions():
    """With the frozen encoder the predictor uses (module doc: cosine >= 0.7), a complaint said three ways counts
    three times; three different questions on one subject do not."""
    rule, embed = RepetitionTrigger(3, ESCALATE), SentenceEmbedder()
    complaint = _dialogue("My package never arrived.", "Can you share the tracking number?",
                          "The package never arrived!", "Let me check the carrier.",
                          "Like I said, my package has not arrived.", "It should come soon.")
    assert [t for t, _ in rule.breaches(complaint, embed)] == [5]
    questions = _dialogue("How long does shipping to Canada take?", "About a week.",
                          "Do you charge customs fees for Canada?", "No, they are included.",
                          "Can I return an item bought from Canada?", "Yes, within 30 days.")
    assert rule.breaches(questions, embed) == []
