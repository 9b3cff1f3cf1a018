"""Rules the code checks instead of the cross-encoder: one place that says which kinds there are.

Some rules are character or count tests that a 22M uncased cross-encoder reads worst and code checks exactly:
length limits (:mod:`csrm.model.rule.limits`), emoji bans (:mod:`csrm.model.rule.emoji_bans`: the tokenizer reads
every emoji as ``[UNK]``) and rules about letter case (:mod:`csrm.model.rule.letter_case`: the tokenizer is
uncased). Each module parses only a rule that is *nothing but* its kind, so a rule with anything more stays with
the cross-encoder. The predictor never sends a checked rule to the cross-encoder: an Agent turn that breaks it
is a counted violation, and the check's ``describe`` is the evidence's ``reason``.
"""

from __future__ import annotations

from typing import Protocol

from csrm.model.rule.emoji_bans import parse as parse_emoji_ban
from csrm.model.rule.letter_case import parse as parse_case_rule
from csrm.model.rule.limits import parse as parse_limit


class CodeCheck(Protocol):
    def broken_by(self, text: str) -> bool:
        """Whether one Agent turn breaks the rule."""

    def describe(self, text: str) -> str:
        """What was found in an Agent turn that breaks it, for the evidence ("212 words; the rule allows at most 150")."""


PARSERS = (parse_limit, parse_emoji_ban, parse_case_rule)


def parse(rule: str) -> CodeCheck | None:
    """The rule's check when it is only a length limit, an emoji ban or a rule about letter case; else ``None``."""
    return next((check for parser in PARSERS if (check := parser(rule)) is not None), None)
