"""Long-form rule wordings: the same checkable rule written the way hand-written policies write it.

Generated rules are short (median 21 MiniLM tokens in the first data set) while hand-written business rules
are long: DynaBench's median rule is 55 tokens, a quarter exceed 64, and they carry a scope ("When assisting
customers of the clinic, ..."), a reason ("... to protect patient privacy"), and sub-bullets. A judge trained
only on short rules has never had to find the operative clause inside such text, and its scores on long rules
are arbitrary (measured: DynaBench PASS items' strongest pair logit 3.0 against 1.8 for FAIL items, issue 28).

:func:`elaborate` wraps a rule's text in a scope, a reason and/or neutral sub-bullets drawn from split-partitioned
:class:`~augmentation.rules.core.Wordings`. None of these phrases changes what the rule forbids or requires:
the rule keeps its ``check`` (labels are still computed by code from the transcript), its key and subjects, so a
contrast built from an elaborated rule flips or keeps labels exactly as before. The phrases are generic business
prose written here, not text from any evaluation set.
"""

from __future__ import annotations

import random
from dataclasses import replace

from augmentation.rules.core import RuleItem, Wordings

SCOPES = Wordings("elaborate.scope", [
    "When assisting customers through any of our support channels,",
    "As part of the service standards that apply to every conversation,",
    "For all interactions handled by the virtual assistant,",
    "In every reply, regardless of the product line involved,",
    "Throughout the conversation, including follow-up questions,",
    "While helping users with account, billing or product questions,",
    "In line with the company's customer communication guidelines,",
    "Whenever the assistant is responding on behalf of the business,",
    "Across chat, email and messaging conversations alike,",
    "During any customer conversation, however informal,",
    "As a standing instruction for this deployment,",
    "When answering questions from members of the public,",
])
REASONS = Wordings("elaborate.reason", [
    "This keeps our communication consistent and compliant with internal policy.",
    "Our legal and compliance teams have asked that this be followed without exception.",
    "This standard exists to protect both the customer and the company.",
    "Consistency here is part of how the quality team reviews conversations.",
    "The rule was introduced after a review of past customer conversations.",
    "Agents who are unsure should still follow this instruction as written.",
    "Team leads audit a sample of conversations against this requirement every week.",
    "This requirement comes from the communications handbook.",
    "Following it helps keep the customer experience predictable across teams.",
    "It applies for the full length of the conversation, not only the first reply.",
    "This is one of the standards the assistant is evaluated against.",
    "Please treat this as a firm requirement rather than a suggestion.",
])
BULLETS = Wordings("elaborate.bullets", [
    "This applies to:\n  - chat conversations\n  - email replies",
    "Keep in mind:\n  - the rule holds for every customer segment\n  - it holds on every channel",
    "Scope:\n  - new and existing customers\n  - all regions we serve",
    "Notes:\n  - the instruction applies to every reply\n  - it does not expire during the conversation",
    "Applies in:\n  - web chat\n  - the mobile app\n  - messaging channels",
    "Reminder:\n  - this is reviewed during quality checks\n  - escalate questions to a team lead",
])


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text[:2] != text[:2].upper() else text


def elaborate(rule: RuleItem, rng: random.Random, split: str) -> RuleItem:
    """``rule`` in a long-form wording (module doc): a scope before it, and a reason and/or sub-bullets after it,
    each drawn with a fixed chance and at least one of the three always added. Same check, key and subjects."""
    text = rule.text.strip()
    parts = {"scope": rng.random() < 0.6, "reason": rng.random() < 0.6, "bullets": rng.random() < 0.3}
    if not any(parts.values()):
        parts[rng.choice(tuple(parts))] = True
    if parts["scope"]:
        text = f"{SCOPES.pick(rng, split)[1]} {_lower_first(text)}"
    if parts["reason"]:
        text = f"{text} {REASONS.pick(rng, split)[1]}"
    if parts["bullets"]:
        text = f"{text} {BULLETS.pick(rng, split)[1]}"
    return replace(rule, text=text)


def elaborate_some(rules: list[RuleItem], share: float, rng: random.Random, split: str) -> list[RuleItem]:
    """Each rule long-form with probability ``share`` (the rest kept as they are), order kept."""
    return [elaborate(r, rng, split) if rng.random() < share else r for r in rules]
