"""Emoji bans, checked by code: "Never use emojis.", "Keep emoji out of every message.", "Do not use the stop
sign emoji."

The rule judge's backbone cannot see an emoji: the uncased MiniLM tokenizer turns every one of them into
``[UNK]``, as it does "北京" or a rare symbol. Measured on the shipped seed-0 judge, *Never use emojis.* scores
logit -0.58 on a reply ending in 🎉 and -2.33 on the same reply without it (a violation, read as compliant),
and *Do not use the stop sign emoji.* scores the reply holding 🛑 *lower* (-2.54) than the one holding 🎉
(-1.10). Whether a reply holds an emoji is a character test, so a rule that is **only** an emoji ban is not
read by the cross-encoder: :func:`parse` turns it into an :class:`EmojiBan` whose :meth:`EmojiBan.broken_by`
looks for emoji in each Agent turn with the ``emoji`` package's list of Unicode emoji (sequences, skin tones
and variation selectors included). The predictor treats it as it treats a length limit
(:mod:`csrm.model.rule.limits`): a broken ban is a counted violation, a kept one is never read.

A rule is read as a ban when it has no condition ("if / when ..."), a prohibition (never, do not, avoid,
without, not allowed, keep ... out, ...), the word "emoji" (or "emojis"), and nothing else but filler ("in
your replies", "every message", "plain text"). It bans every emoji, or only the ones it names: an emoji
written in the rule ("do not use 🛑") or one named by its Unicode short name before the word "emoji" ("the
stop sign emoji" is 🛑). A name the ``emoji`` package does not know leaves the rule to the cross-encoder.
©, ® and ™ are emoji to Unicode but marks in running text, so they never break a ban.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from csrm.model.rule.wording import CONDITION, FILLER, MAX_NEGATIONS, lower_words, negations

_EMOJI_WORD = re.compile(r"\bemojis?\b", re.I)
_BANNED = re.compile(r"\b(keep\b.*\bout|free of|forbidden|prohibited|banned)\b", re.I)  # besides a negation
_NAMED = re.compile(r"\b(?:the|a|an|any)\s+((?:[a-z][a-z'-]*\s+){1,4})emojis?\b", re.I)
_FILLER = FILLER | frozenset("""
conversation conversations chat used keep turn turns avoid do don't never no not without refrain from free out
allowed permitted forbidden prohibited banned emoji emojis plain include includes including add put insert send type
ever them it its or content writing characters character symbols icons icon user users customer customers guest
guests people single
""".split())
_NOT_EMOJI = frozenset("\u00a9\u00ae\u2122")  # ©, ®, ™: marks in running text


def _emoji_in(text: str) -> list[str]:
    """The emoji of ``text`` in order, each without its variation selector (so ❤️ and ❤ are one)."""
    import emoji

    found = (e["emoji"].replace("\ufe0f", "") for e in emoji.emoji_list(text))
    return [e for e in found if e and e not in _NOT_EMOJI]


@dataclass(frozen=True)
class EmojiBan:
    """No emoji in any Agent turn, or none of ``only`` when the rule names some."""

    only: frozenset[str] | None = None

    def found(self, text: str) -> list[str]:
        return [e for e in _emoji_in(text) if self.only is None or e in self.only]

    def broken_by(self, text: str) -> bool:
        return bool(self.found(text))

    def describe(self, text: str) -> str:
        """What the ban found in an Agent turn, for the evidence: "2 emoji (🎉 😊); the rule allows none", or
        "uses 🛑, which the rule forbids"."""
        found = self.found(text)
        if self.only is None:
            return f"{len(found)} emoji ({' '.join(dict.fromkeys(found))}); the rule allows none"
        return f"uses {' '.join(dict.fromkeys(found))}, which the rule forbids"


def _by_name(words: str) -> str | None:
    import emoji

    name = "_".join(w.strip("'").lower() for w in words.split())
    for language in ("en", "alias"):
        glyph = emoji.emojize(f":{name}:", language=language)
        if glyph != f":{name}:":
            return glyph.replace("\ufe0f", "")
    return None


@lru_cache(maxsize=16384)  # a policy's rules are parsed for its pairs and again for its counted violations
def parse(rule: str) -> EmojiBan | None:
    """The rule as an :class:`EmojiBan`, or ``None`` when it is not only an emoji ban (module doc)."""
    text = " ".join(rule.split())
    banned = negations(text) + len(_BANNED.findall(text))
    if not _EMOJI_WORD.search(text) or not 0 < banned <= MAX_NEGATIONS or CONDITION.search(text):
        return None  # "Emoji are not forbidden", "Never reply without an emoji": two negations, not a ban
    only = set(_emoji_in(text))
    rest = text
    named = _NAMED.search(text)
    if named and not set(named.group(1).lower().split()) <= _FILLER:
        glyph = _by_name(named.group(1))
        if glyph is None:
            return None
        only.add(glyph)
        rest = text[: named.start(1)] + " " + text[named.end(1):]
    if any(w not in _FILLER for w in lower_words(rest)):
        return None
    return EmojiBan(frozenset(only) or None)
