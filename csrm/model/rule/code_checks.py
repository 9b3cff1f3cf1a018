"""Rules the code checks instead of the cross-encoder: one place that says which kinds there are.

Some rules are character or count tests that a 22M uncased cross-encoder reads worst and code checks exactly:
length limits (:mod:`csrm.model.rule.limits`), emoji bans (:mod:`csrm.model.rule.emoji_bans`: the tokenizer reads
every emoji as ``[UNK]``), rules about letter case (:mod:`csrm.model.rule.letter_case`: the tokenizer is
uncased) and IFEval's format instructions and required or forbidden words (:mod:`csrm.model.rule.format_rules`:
JSON, commas, an end phrase, "include the word 'punk'"). Each module parses only a rule that is *nothing but*
its kind, so a rule with anything more stays with the cross-encoder. The predictor never sends a checked rule to
the cross-encoder: an Agent turn that breaks it is a counted violation, and the check's ``describe`` is the
evidence's ``reason``.

One kind is checked over the whole conversation, not turn by turn (:mod:`csrm.model.rule.repetition`): "if the
user repeats the same message 3 times, respond with "..."" is broken by the reply after the third time, which only
the history shows; its ``breaches(turns, embed)`` names those replies.

One kind is checked only halfway (:func:`parse_kept`): a required word under a condition ("if the user mentions
The Clash, include the word 'punk'"). A turn that holds the word keeps the rule whatever the condition, so the
predictor does not read the rule against it; a turn without it goes to the cross-encoder, which reads the
condition.
"""

from __future__ import annotations

from typing import Protocol

from csrm.model.rule.emoji_bans import parse as parse_emoji_ban
from csrm.model.rule.format_rules import RequiredWords
from csrm.model.rule.format_rules import parse as parse_format_rule
from csrm.model.rule.letter_case import parse as parse_case_rule
from csrm.model.rule.limits import parse as parse_limit
from csrm.model.rule.repetition import RepetitionTrigger
from csrm.model.rule.repetition import parse as parse_repetition


class CodeCheck(Protocol):
    def broken_by(self, text: str) -> bool:
        """Whether one Agent turn breaks the rule."""

    def describe(self, text: str) -> str:
        """What was found in an Agent turn that breaks it, for the evidence ("212 words; the rule allows at most 150")."""


# a repetition trigger first: its quoted reply under a condition would otherwise read as a required word
PARSERS = (parse_repetition, parse_limit, parse_emoji_ban, parse_case_rule, parse_format_rule)


def _first(rule: str) -> CodeCheck | RequiredWords | RepetitionTrigger | None:
    return next((check for parser in PARSERS if (check := parser(rule)) is not None), None)


def parse(rule: str) -> CodeCheck | RepetitionTrigger | None:
    """The rule's check when it is only a length limit, an emoji ban, a rule about letter case, one of IFEval's
    format instructions (required words without a condition among them) or a repetition trigger (checked over the
    conversation: :meth:`~csrm.model.rule.repetition.RepetitionTrigger.breaches`); else ``None``."""
    check = _first(rule)
    return None if isinstance(check, RequiredWords) and check.conditional else check


def parse_kept(rule: str) -> RequiredWords | None:
    """The rule when it is a required word under a condition (module doc): its ``kept_by(turn)`` says that a
    turn keeps it; else ``None``."""
    check = _first(rule)
    return check if isinstance(check, RequiredWords) and check.conditional else None
