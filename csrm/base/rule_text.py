"""Numbered rule policies and ``User:`` / ``Agent:`` transcripts, the DynaBench hub schema, as structures.

One parser for everyone who reads such text: the rule-violation augmentation (which writes policies and
transcripts and must read back exactly what a judge will read), the rule judge, and the evaluation. A policy
is split into **rules** at top-level numbered items (``1.``, ``2)``, ``12.``); indented lines and bullets
under a rule belong to it (DynaBench writes sub-lists such as "Consider:\n  - Cathodic protection"). Text
before the first numbered item is a preamble rule of its own (number ``None``), so that nothing a policy says
is dropped. A policy with no numbered item at all is one rule. Turns are split at ``User:`` / ``Agent:`` tags
at the start of a line (optionally quoted, as some DynaBench rows write ``'User':``); consecutive turns of one
role are joined, and text before the first tag is a leading user turn.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_RULE_START = re.compile(r"^(\d{1,3})[.)][ \t]+", re.MULTILINE)  # at column 0: nested lists are indented
_TURN = re.compile(r"^[ \t]*['\"]?(User|Agent)['\"]?[ \t]*:['\"]?[ \t]*", re.MULTILINE)
ROLES = {"User": "user", "Agent": "assistant"}
TAGS = {role: tag for tag, role in ROLES.items()}


@dataclass(frozen=True)
class Rule:
    """One rule of a policy: ``number`` as written (``None`` for a preamble), ``text`` without the number."""

    number: int | None
    text: str


@dataclass(frozen=True)
class Turn:
    """One turn of a transcript: ``role`` is ``"user"`` or ``"assistant"``."""

    role: str
    text: str


def split_rules(policy: str) -> list[Rule]:
    """The rules of a numbered policy (module doc). Empty only for a blank policy."""
    starts = list(_RULE_START.finditer(policy))
    if not starts:
        return [Rule(None, policy.strip())] if policy.strip() else []
    rules = [Rule(None, policy[: starts[0].start()].strip())] if policy[: starts[0].start()].strip() else []
    for i, match in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(policy)
        text = policy[match.end():end].strip()
        if text:
            rules.append(Rule(int(match.group(1)), text))
    return rules


def format_rules(rules: list[str], *, start: int = 1, blank_line: bool = False) -> str:
    """A numbered policy from rule texts (the inverse of :func:`split_rules` for rules without a preamble)."""
    sep = "\n\n" if blank_line else "\n"
    return sep.join(f"{start + i}. {text.strip()}" for i, text in enumerate(rules))


def split_turns(transcript: str) -> list[Turn]:
    """The turns of a ``User:`` / ``Agent:`` transcript (module doc)."""
    turns: list[Turn] = []
    matches = list(_TURN.finditer(transcript))
    preamble = transcript[: matches[0].start()] if matches else transcript
    if preamble.strip():
        turns.append(Turn("user", preamble.strip()))
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(transcript)
        role, text = ROLES[match.group(1)], transcript[match.end():end].strip()
        if turns and turns[-1].role == role:
            turns[-1] = Turn(role, f"{turns[-1].text}\n\n{text}".strip())
        else:
            turns.append(Turn(role, text))
    return turns


def format_turns(turns: list[Turn]) -> str:
    """A transcript from turns (the inverse of :func:`split_turns`)."""
    return "\n".join(f"{TAGS[t.role]}: {t.text.strip()}" for t in turns)


def agent_turns(turns: list[Turn]) -> list[int]:
    """Indices (into ``turns``) of the Agent turns: the turns a rule judge checks."""
    return [i for i, t in enumerate(turns) if t.role == "assistant"]
