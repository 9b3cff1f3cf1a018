"""Topic conditions: a rule that waits for the user to raise a named topic cannot be broken before it is named.

Most hand-written rules are conditional, and most conditions name a topic: "When the user inquires about the
sfumato technique, describe it as ...", "Include the word "punk" when the user mentions The Clash". Measured on
the DynaBench (Aug) dev half, the pair judge does not read such conditions: the sfumato rule scores logit ~4.7
(a confident violation) against Agent turns about spinal surgery, trekking in Nepal and sociology, where nobody
said "sfumato", and under the OR over rules one such rule decides a PASS item. Reading the condition is a
lexical question the code answers better than a 22M cross-encoder: has the topic been named?

:func:`cannot_apply` says a rule **cannot** apply to an Agent turn when (1) the rule has a topic condition (an
"if / when / in the case that" clause whose verb is one of asking, mentioning, discussing, referring, ..., with
the clauses that narrow it: "..., specifically comparing RYGB with sleeve gastrectomy, do ..."; not an example,
"for example U-matic tapes", which the user may leave out), (2) that clause holds **rare** words, words under
one per million in running English text (``wordfreq``'s Zipf frequency below :data:`RARE_ZIPF`: "sfumato",
"Nishimura", "Verfremdungseffekt", "QUAL2K", "rebar"; not "casting", "employee" or "steel"), and (3) none of
them occurs in the User turns up to that Agent turn, compared as English Snowball stems (nltk), so "castings"
meets "casting". Until 2026-12-07 they were compared on their first five letters, and "interested" met
"interbody", "interface" and "intersectionality", "found" met "foundryman", "contact" met "contaminant": in
DynaBench's transcripts such matches let topic rules be read against ~400 Agent turns whose user never named
the topic. Only a rare word names a topic precisely enough: a condition in common words ("if employee
information is requested by a user external to the company", "if a user repeats the same message 3 times") is
never gated, and the cross-encoder reads it; nor is a condition met by the topic's absence ("if the user does
not mention Zyrtec", "other than sfumato").

**Subjects in several words.** A condition whose words are all common may still name its subject precisely
in several of them: "the conservation challenges specific to early video art" (Zipf 4.3, 4.5, 5.4, 5.4, 5.3).
With at least :data:`SUBJECT_WORDS` subject words under :data:`SUBJECT_ZIPF` (not the verbs, the people, nor
words that only say that something is asked: "topic", "question", "information", "specific"), the rule waits
until the user has said one of them. One common word is too easily talked around ("the weather": "will it
rain?"), two are still a business rule's everyday subject ("employee salaries": "what does John earn?");
three that the user avoids all together mean the subject has not come up. Before this, the video-art rule fired
on every transcript about employees' GPS locations and was the PASS item's top rule in all 40 within-transcript
pairs the recipe's rerun lost.

**Names.** A name the condition quotes ("an elimination on 'Survivor 18'", "the textbook "Transport
Phenomena"") or capitalises after its first word ("the musical group The Clash", "the films of David Lynch",
"NEC Article 250") is a topic too, however common its words: each of its words rarer than one in 10,000 running
words (Zipf below :data:`NAME_ZIPF`: "lynch" 3.9, "clash" 4.0, "survivor" 4.0; not "love" 5.8, "big" 5.7 or
"david" 5.1) counts as a rare word does. A condition in title case or capitals capitalises every word and
names nothing this way. Before quoted names counted, the Survivor rule fired on every transcript about
employees' GPS locations, above the violated rule of the same transcript under a FAIL policy (12 of the shipped
judge's 137 within-transcript pairs); before capitalised ones counted, the rules on David Lynch's films, NEC
Article 250 grounding and post-colonial African cinema did the same for the recipe's rerun (83 of 137). The
common words of a name stay out: "Love Island" named the topic of any transcript where the user would "love" a
reply.

The gate is one-sided: it removes (rule, turn) pairs that cannot be violations and never adds a verdict. It
removes none of the 96 violated rules of the DynaBench dev half's FAIL items (for any threshold from Zipf 2.5
to 4; with names too) and none of the 1,805 violating pairs of the generated dev and test data (nor, with
names, any of the 5,969 of the current generator's data), and it lifts four judges' DynaBench AUROC by 5-12
points (``docs/results.md``, 2026-12-07; names, narrowing clauses and stems 1.4-6.6 more for three judges). The thresholds are
properties of English, not fitted on any benchmark: Zipf 3 is one occurrence per million words.
"""

from __future__ import annotations

import re
from functools import lru_cache

from csrm.base.text import SENTENCE_END
from csrm.model.rule.wording import NEGATION

RARE_ZIPF = 3.0
NAME_ZIPF = 5.0  # a word of a name names it when rarer than one in 10,000 words: "lynch" 3.9, not "love" 5.8
SUBJECT_ZIPF = 5.5  # a subject word is rarer than one in ~3,000 words: "conservation" 4.3, "video" 5.4; not "time"
SUBJECT_WORDS = 3  # ... and a subject named in at least this many of them is a topic (module doc)
# words that say that something is asked or discussed, not what: never subject words
_NOT_SUBJECT = frozenset("topic topics conversation context question questions information details detail specific "
                         "specifically particular particularly regarding related concerning".split())
_HEAD = re.compile(r"^\s*(?:if|when|whenever|in the case that|in case|should|once|upon)\s+(.*?)"
                   r"(?:,|:|\bdo the following\b|\bthen\b)", re.I | re.S)
_TAIL = re.compile(r"\b(?:if|when|whenever)\s+((?:the|a)\s+(?:user|customer|guest|patient|client|caller)\b.*?)"
                   r"(?:\.\s|\.$|$)", re.I | re.S)
_TOPIC_VERB = re.compile(r"\b(ask|asks|asked|inquires?|inquired|discuss(?:es|ing)?|mention(?:s|ed)?|brings? up|"
                         r"references?|referencing|refers? to|talks? about|is about|raises?|says|names?)\b", re.I)
# the verbs themselves and the people who say them are never the topic, however rare their spelling
_NOT_TOPIC = frozenset("ask asks asked inquire inquires inquired discuss discusses discussing mention mentions "
                       "mentioned brings bring reference references referencing refers talks talk raises says "
                       "user users customer guest patient client caller".split())
_WORD = re.compile(r"[a-z0-9]+")
_CASED_WORD = re.compile(r"[^\W_]+")
# a quoted name: straight or curly quotes, single ones only at word edges (not the apostrophe of "Elias's")
_QUOTED = re.compile(r"(?<!\w)'([^'\n]{2,60}?)'(?!\w)|\"([^\"\n]{2,60})\"|“([^”\n]{2,60})”|‘([^’\n]{2,60})’")
# a clause that narrows the condition it follows ("asks about surgery for obesity, specifically comparing RYGB
# with sleeve gastrectomy, do ..."): part of the condition. Examples ("for example U-matic tapes") are not: the
# user may raise the topic without them
_NARROWING = re.compile(r"\s*((?:specifically|particularly|especially|in particular|namely|focusing)\b.*?)"
                        r"(?=,|:|\bdo the following\b|\bthen\b)", re.I)
# a condition met when the topic is absent, or an exception to the rule: never a gate (topic_condition)
_ABSENT = re.compile(r"\b(other than|unrelated|apart from|besides|anything but|instead of|rather than|outside|"
                     r"not related|except)\b", re.I)
_EXCEPT = re.compile(r"\b(except|unless|other than)\W+(?:if|when|whenever|in the case that|in case)?\W*$", re.I)


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


@lru_cache(maxsize=65536)
def _zipf(word: str) -> float:
    from wordfreq import zipf_frequency  # loads its English list (~0.2 s) on first use

    return zipf_frequency(word, "en")


def topic_condition(rule: str) -> str | None:
    """The rule's condition clause when it is about what the user raises ("the user mentions The Clash"),
    else ``None``: a leading "if/when ..., " clause or a trailing "... if the user ..." clause. A condition
    that holds when the topic is **absent** ("if the user does not mention Zyrtec", "asks about anything other
    than sfumato", "except when the user mentions ...") is not one: gating it would drop the rule exactly where it
    applies. Nor is a trailing condition in a later sentence of the rule: "Always refer to your homeworld as
    Corona. If a guest asks about your spaceship, name its speed" holds its first sentence whatever is asked."""
    text = " ".join(rule.split())
    match = _HEAD.match(text) or _TAIL.search(text)
    if match and match.re is _TAIL and SENTENCE_END.search(text, 0, match.start() + 1):
        return None  # a later sentence's condition ("Always call it Corona. If a guest asks ...") is not the rule's
    clause = match.group(1) if match else None
    if clause and match.re is _HEAD:
        end = match.end(1)
        while narrowed := _NARROWING.match(text, end + 1):
            clause, end = f"{clause}, {narrowed.group(1)}", narrowed.end(1)
    if not clause or not _TOPIC_VERB.search(clause):
        return None
    if NEGATION.search(clause) or _ABSENT.search(clause) or _EXCEPT.search(text[: match.start(1)]):
        return None
    return clause


@lru_cache(maxsize=16384)
def topic_terms(rule: str) -> tuple[str, ...]:
    """The rare words of the rule's topic condition and the words of the names it quotes (module doc); empty when
    there is none to check."""
    clause = topic_condition(rule)
    if clause is None:
        return ()
    rare = {w for w in _words(clause) if _names(w) and _zipf(w) < RARE_ZIPF}
    spans = [next(g for g in m.groups() if g) for m in _QUOTED.finditer(clause)] + _capitalised(clause)
    named = {w for span in spans for w in _words(span) if _names(w) and _zipf(w) < NAME_ZIPF}
    if rare or named:
        return tuple(sorted(rare | named))
    verbs = set(_words(" ".join(m.group(0) for m in _TOPIC_VERB.finditer(clause))))
    subject = {w for w in _words(clause)
               if _names(w) and w not in verbs and w not in _NOT_SUBJECT and _zipf(w) < SUBJECT_ZIPF}
    return tuple(sorted(subject)) if len(subject) >= SUBJECT_WORDS else ()


def _capitalised(clause: str) -> list[str]:
    """The words the condition capitalises after its first ("the musical group The Clash", "the films of David
    Lynch", "NEC Article 250"): names, however common their words. A clause in title case or capitals names
    nothing this way ("If The Customer Asks About Refunds"), so it gives none."""
    words = _CASED_WORD.findall(clause)[1:]
    capitalised = [w for w in words if w[0].isupper()]
    long_words = [w for w in words if len(w) > 3]
    if sum(w[0].isupper() for w in long_words) * 2 > len(long_words):
        return []
    return capitalised


def _names(word: str) -> bool:
    return len(word) >= 3 and not word.isdigit() and word not in _NOT_TOPIC


def cannot_apply(rule: str, user_text: str) -> bool:
    """True when the rule names a topic the User turns so far (``user_text``) have not raised (module doc)."""
    terms = topic_terms(rule)
    if not terms:
        return False
    said = _said(user_text)
    return not any(t in said or _stem(t) in said for t in terms)


@lru_cache(maxsize=256)
def _said(user_text: str) -> frozenset[str]:
    """The words of the User turns so far and their stems, once per text (every rule of a policy asks)."""
    words = _words(user_text)
    return frozenset(words) | frozenset(_stem(w) for w in words)


@lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    """English Snowball stem: "castings" and "casting" meet, "contact" and "contaminant" do not (nor
    "interested" and "interface", which the first five letters once matched)."""
    return _stemmer().stem(word)


@lru_cache(maxsize=1)
def _stemmer():
    # importing nltk takes ~2 s: only where a condition is checked
    from nltk.stem.snowball import SnowballStemmer

    return SnowballStemmer("english")
