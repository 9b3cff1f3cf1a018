"""The vocabulary the code-checked rule kinds share (csrm.model.rule.wording): one meaning of a negation, a
condition and a number for limits, emoji bans, letter case and format rules."""

import pytest

from csrm.model.rule.code_checks import parse
from csrm.model.rule.emoji_bans import EmojiBan
from csrm.model.rule.format_rules import ForbiddenWords, FormatRule
from csrm.model.rule.letter_case import CaseRule
from csrm.model.rule.limits import Limit
from csrm.model.rule.wording import NUMBER_WORDS, negations, number


def test_numbers_and_negations_are_counted_once_for_every_kind():
    assert number("12") == 12 and number("Twelve") == 12 and max(NUMBER_WORDS.values()) == 20
    assert negations("Do not use emojis.") == 1 and negations("Never reply without an emoji.") == 2
    assert negations("Doesn't include the keywords.") == 1 and negations("Use all lowercase letters.") == 0


@pytest.mark.parametrize(("rule", "check"), [
    ("No reply should have more than 50 words.", Limit("words", 0, 50)),
    ("Emojis are forbidden.", EmojiBan(None)),
    ("Do not write in all capital letters.", CaseRule("no_shouting")),
    ("Do not use any commas.", FormatRule("no_comma")),
    ("Avoid the word 'cheap'.", ForbiddenWords(("cheap",))),
])
def test_one_negation_makes_a_ban_in_every_kind(rule, check):
    assert parse(rule) == check


@pytest.mark.parametrize("rule", [
    "Never reply without at least 20 words.",                      # would be "at most 19"
    "Never send a message without emojis.",                        # would be an emoji ban
    "Emojis are not forbidden.",
    "Do not refrain from using emojis.",
    "Never write responses that are not in all capital letters.",  # would be a ban on shouting
    "Do not reply without using lowercase letters.",
    "Never avoid commas.",                                         # would be a comma ban
    "Do not refrain from using the word 'cheap'.",                 # would forbid the word
    "Keep responses under 100 words where possible.",              # a condition, for every kind
    "Never use emojis where the customer can see them.",
])
def test_two_negations_or_a_condition_leave_the_rule_to_the_cross_encoder(rule):
    assert parse(rule) is None
