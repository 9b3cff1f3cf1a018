"""Request conditions: "if the user asks how to fix their bike, include Z", the condition a described request.

DynaBench's policies are mostly conditional rules whose condition is a described topic or request ("If the user
asks about the fan reaction to a specific controversial elimination on 'Survivor 18', include ..."), almost
none of which apply to the conversation they sit in. A judge trained only on conditions that name a short
term ("if the user mentions jazz") learned to fire on such rules whatever the turn: a long, specific condition
looked like a rule about to be broken (docs/results.md, the rule diagnosis of 2026-12-06). This module gives the
obligation family conditions written the same way, from real user requests (the WildGuardMix prompts CoSAlign
trained on), so most long conditions in a training policy are *not* met.

:func:`describe` turns a request into a third-person description by code ("How can I hack my schedule to be
more productive?" -> "asks how to hack their schedule to be more productive"), cut to its first words: the
description says what the request is about without copying all of it. Labels stay code-verified: the condition
is met iff the User turn answered contains the request itself (:class:`Request` keeps both), so a transcript
whose User turn holds another request keeps the rule whatever the Agent says. Requests are split by hash into
train/dev/test, so test conditions are requests never seen in training.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

from augmentation.rules.core import RuleItem, Transcript, Wordings, partition, sentence_case

PRONOUNS = {"i": "they", "me": "them", "my": "their", "mine": "theirs", "myself": "themselves", "i'm": "they're",
            "i've": "they've", "i'd": "they'd", "we": "they", "us": "them", "our": "their", "am": "are"}
LEADS = (  # (pattern over the request's first sentence, description form); first match wins
    (re.compile(r"^how (?:do|can|could|would|should|might) (?:i|we|one|you) (.+)$", re.I), "asks how to {0}"),
    (re.compile(r"^what(?:'s| is| are) the best way to (.+)$", re.I), "asks for the best way to {0}"),
    (re.compile(r"^(?:can|could|would|will) you (?:please )?(?:help me )?(.+)$", re.I), "asks you to {0}"),
    (re.compile(r"^(?:please )?((?:write|create|generate|give|provide|explain|describe|tell|list|draft|compose|"
                r"suggest|share|summarize|outline|design|develop|produce|recommend) .+)$", re.I), "asks you to {0}"),
    (re.compile(r"^(?:is|are|does|do|can|should) (.+)$", re.I), "asks whether {0}"),
    (re.compile(r"^((?:what|why|where|when|who|which) .+)$", re.I), "asks {0}"),
)
TRAILING = {"a", "an", "the", "of", "to", "in", "on", "for", "with", "and", "or", "by", "that", "their", "your",
            "about", "from", "as", "at", "into", "is", "are", "be", "them", "they", "how", "what", "why"}


@dataclass(frozen=True)
class Request:
    """A user request (planted verbatim in a User turn) and its description (written in the rule)."""

    text: str
    description: str


def _third_person(text: str) -> str:
    return " ".join(PRONOUNS.get(w.lower(), w) for w in text.split())


def describe(request: str, rng: random.Random, max_words: tuple[int, int] = (6, 24)) -> str | None:
    """The request as "asks ..." in the third person, cut to 6-24 words (drawn) and never ending on a function
    word; ``None`` for a request no lead pattern reads (about 45% of the WildGuardMix prompts) or of under 4 or
    over 30 words in its first sentence."""
    first = re.split(r"(?<=[.?!])\s", " ".join(request.split()))[0].rstrip("?.! ")
    if not 4 <= len(first.split()) <= 30:
        return None
    for pattern, form in LEADS:
        match = pattern.match(first)
        if match:
            body = _third_person(match.group(1))
            words = form.format(body[:1].lower() + body[1:]).split()[: rng.randint(*max_words)]
            while words and words[-1].lower().strip(",;:") in TRAILING:
                words.pop()
            return " ".join(words).rstrip(",;:") if len(words) >= 4 else None
    return None


def load_requests(path: Path | None) -> dict[str, list[str]]:
    """Requests per split (hash partition, so a test request is never in train); empty splits without a file."""
    if path is None or not Path(path).is_file():
        return {"train": [], "dev": [], "test": []}
    prompts = sorted({" ".join(p.split()) for p in json.loads(Path(path).read_text(encoding="utf-8"))
                      if isinstance(p, str) and 12 <= len(p) <= 300})
    split_of = partition(prompts, "rule-requests")
    return {s: [p for p in prompts if split_of[p] == s] for s in ("train", "dev", "test")}


def draw(rng: random.Random, requests: list[str], exclude: str = "") -> Request | None:
    """A request of the list with a description (a few draws: most requests are described), or ``None``."""
    for _ in range(8):
        text = rng.choice(requests)
        if text == exclude:
            continue
        description = describe(text, rng)
        if description:
            return Request(text, description)
    return None


CONTENT = Wordings("requests.content", [
    "If the user {c}, {o}.",
    "In the case that the user {c}, do the following: {o}.",
    "When the user {c}, {o} in subsequent related responses.",
    "{O} if the user {c}.",
    "Whenever a user {c}, make sure to {o}.",
    "In case the user {c}, {o} in your reply.",
    "If a user {c}, specifically focusing on the details they give, {o}.",
    "When responding to a user who {c}, {o}.",
    "If the user {c}, always {o} before moving on to anything else.",
    "Start your answer by making sure to {o} whenever the user {c}.",
    "For users who {c}, {o}; this applies to every later reply on the subject as well.",
    "In conversations where the user {c}, {o} and keep the explanation accurate.",
])
OBLIGATIONS = Wordings("requests.obligation", [
    "explain {d}", "mention {d}", "start by discussing {d}", "reference {d}", "prioritize discussing {d}",
    "briefly cover {d}", "point out {d}", "recommend resources on {d}", "add a short note on {d}",
    "compare the answer with {d}", "describe {d} step by step", "emphasize {d}",
])
SUBJECT = re.compile(r"^asks (?:you to |for )?(how to .+|(?:what|why|where|when|who|which|whether) .+|the best way to .+)$")


def content_rules(rng: random.Random, split: str, requests: list[str], n: int) -> list[RuleItem]:
    """``n`` rules "if the user asks <request>, explain <another subject>", as hand-written policies write them.

    Whether such an obligation is met cannot be checked by code, so the rule counts as broken by every Agent turn
    that answers its request (its ``check``): it is only ever kept as a rule whose condition is not met, i.e. one
    of the many conditional rules of a policy that do not apply to the conversation (module doc)."""
    out = []
    for _ in range(n * 3):
        ask, other = draw(rng, requests), draw(rng, requests)
        subject = SUBJECT.match(other.description) if ask and other else None
        if subject is None:
            continue
        duty = OBLIGATIONS.pick(rng, split)[1].format(d=subject.group(1))
        template, text = CONTENT.pick(rng, split)
        trigger = ask.text.lower()

        def check(tr: Transcript, trigger: str = trigger) -> list[int]:
            return [i for i in tr.agent_indices()
                    if i > 0 and tr.turns[i - 1].role == "user" and trigger in tr.turns[i - 1].text.lower()]

        out.append(RuleItem(text.format(c=ask.description, o=duty, O=sentence_case(duty)), "obligation", template,
                            f"request:{trigger}", check, frozenset({trigger})))
        if len(out) == n:
            break
    return out
