"""Format rules and required or forbidden words, checked by code: IFEval's verifiable instructions read from a
rule's wording ("Wrap your entire response in JSON format.", "Do not use any commas.", "End your response with
the exact phrase 'Is there anything else I can help with?'", "Include the keywords 'river' and 'desert'.").

Whether a reply is valid JSON, holds a comma, ends with a phrase or contains a word is a character test that
the 22M uncased cross-encoder reads from a handful of its words and code checks exactly (the shipped judge
scored *include the word "falcon"* at logit ~5 with or without "falcon" in the reply). IFEval names these
instructions and lm-eval ships a checker for each; the checks below are the same tests, re-stated so that
scoring does not import an evaluation harness (lm-eval stays in the ``[rules]`` extra that writes the
training data), and the tests hold them to lm-eval's verdicts on the generator's texts. Kinds:

- ``no_comma``: no "," anywhere;
- ``json``: the reply, without a markdown fence, parses as JSON;
- ``title``: a non-empty ``<<title>>``;
- ``postscript``: a line holding "P.S." (or "P.P.S" when the rule says so);
- ``quotation``: the reply starts and ends with a double quotation mark;
- ``end_phrase``: the reply ends with the quoted phrase (case and a closing quote aside);
- ``placeholders`` / ``highlights``: at least N ``[placeholders]`` / ``*highlighted*`` sections;
- ``bullets``: exactly N markdown bullet points;
- ``required`` / ``forbidden``: every quoted word present / none present, as whole words in any case (the
  generator's own test; lm-eval's existence checker looks for a substring, so it counts "arc" in "search"); a
  required unquoted link or reference code ("include a link to https://example.com/help", "the reference code
  AB-1234") is a required word too.

A rule is read when one kind's phrase is in it and nothing else but filler: no second instruction, no genre
("write a poem"), no negation except the kind's own ("do not use commas", "no other words should follow").
A condition ("if / when ...") leaves every kind to the cross-encoder, with one exception that is exact: a
**conditional required word** ("If the user mentions The Clash, include the word 'punk' in your response.")
cannot be broken by a turn that holds the word, whatever the condition, so such a turn is not read against it
(:meth:`RequiredWords.kept_by`); a turn without the word is read by the cross-encoder, which reads the condition.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from csrm.model.rule.wording import (
    CONDITION,
    FILLER,
    MAX_NEGATIONS,
    NEGATION,
    NUMBER,
    NUMBER_WORDS,
    lower_words,
    negations,
    number,
)

_QUOTED = re.compile(r'"([^"\n]{1,80})"|“([^”\n]{1,80})”|(?<![\w])\'([^\'\n]{1,80})\'(?![\w])')
_FILLER = FILLER | frozenset("""
entire whole written used or it its this that also include includes including contain contains containing have has
with put provide give format formatted somewhere throughout ensure there just
""".split())
_KIND_WORDING = {
    "no_comma": "comma commas never not no don't do avoid without refrain from allowed must",
    "json": "json block code wrap wrapped markdown ticks nothing else anything outside before after don't do not "
            "add structured",
    "title": "title titles wrapped wrap double angular brackets such as i e g like example name",
    "postscript": "postscript post script starting starts start add explicitly end finish after p s indicated by",
    "quotation": "wrap wrapped double quotation quotes quote marks mark around inside",
    "end_phrase": "end ends finish finishes exact exactly phrase statement very read no other words word follow "
                  "after",
    "placeholders": "at least placeholder placeholders represented by square brackets such as like e g i example",
    "bullets": "exactly bullet bullets point points list markdown marked asterisk",
    "highlights": "highlight highlighted highlighting at least section sections text markdown asterisks asterisk "
                  "wrapping them like such as for example",
    "required": "word words keyword keywords phrase phrases term terms mention add do following link reference code",
    "forbidden": "word words keyword keywords phrase phrases term terms never not no don't do does doesn't avoid "
                 "without refrain from say saying mention mentioning appear",
}
_KIND_WORDS = {kind: frozenset(words.split()) for kind, words in _KIND_WORDING.items()}
# a conditional required word: the condition is one clause at the front ("If ..., include ...") or at the back
# ("Include ... if ..."), and names no other instruction: no negation, nothing after a second full stop
_COND_FRONT = re.compile(r"^\W*(?:always\s+)?(?:if|when|whenever|once|in the case that|in case)\b[^,.;:]*[,:]", re.I)
_COND_BACK = re.compile(r"\b(?:if|when|whenever|once)\b[^,.;:]*[.!]?\s*$", re.I)
_WORD_LIST = r"(?:(?:\s*,\s*|\s+(?:and|or)\s+|\s*,\s*(?:and|or)\s+)?(?:\"[^\"\n]{1,80}\"|“[^”\n]{1,80}”|'[^'\n]{1,80}'))+"
_REQUIRED = re.compile(r"\b(?:include|includes|contain|contains|mention|use|add|say|feature|have)\s+(?:the\s+|a\s+)?"
                       r"(?:exact\s+)?(?:(?:key)?words?|keywords?|phrases?|terms?|sentence)?\s*:?\s*\[?" + _WORD_LIST,
                       re.I)
# an unquoted literal a reply must hold: a link ("include a link to https://example.com/help") or a reference code
# ("the reference code AB-1234"); the sentence's own full stop is not part of it
_REQUIRED_LITERAL = re.compile(
    r"\b(?:include|includes|contain|contains|mention|add|feature|have|give|share)\s+(?:the\s+|a\s+)?(?:"
    r"link\s+to\s+(?P<url>(?:https?://|www\.)[^\s\"']+?)|(?:reference\s+)?code\s+(?P<code>[A-Z0-9]+(?:-[A-Z0-9]+)+))"
    r"(?=[.,;:!?]?(?:\s|$))", re.I)
_FORBIDDEN_HINT = re.compile(r"\b(?:(?:key)?words?|keywords?|phrases?|terms?|include|use|say|mention\w*|"
                             r"contain|appear)\b", re.I)
_PATTERNS = {
    "no_comma": re.compile(r"\bcommas?\b", re.I),
    "json": re.compile(r"\bjson\b", re.I),
    "title": re.compile(r"double angular brackets|<<[^<>\n]*>>", re.I),
    "postscript": re.compile(r"\bpost ?script\b|\bP\.P\.S\b|\bP\.S\.", re.I),
    "quotation": re.compile(r"double quot(?:ation marks?|es)", re.I),
    "end_phrase": re.compile(r"\b(?:end|ends|finish|finishes)\b|\bvery end\b", re.I),
    "placeholders": re.compile(rf"\bat least {NUMBER} placeholders?\b", re.I),
    "bullets": re.compile(rf"\bexactly {NUMBER} bullet points?\b", re.I),
    "highlights": re.compile(rf"\bhighlight at least {NUMBER}(?: text)? sections?\b", re.I),
}
_NO_MORE = re.compile(r"\b(?:and |with )?no other words? (?:should )?(?:follow|after)[^.]*", re.I)
Kind = Literal["no_comma", "json", "title", "postscript", "quotation", "end_phrase", "placeholders", "bullets",
               "highlights"]


def _quoted(text: str) -> list[str]:
    return [next(g for g in m.groups() if g is not None) for m in _QUOTED.finditer(text)]


def _only_filler(text: str, kind_words: frozenset[str]) -> bool:
    text = _QUOTED.sub(" ", text)
    text = re.sub(r"<<[^<>\n]*>>|\[[^\]\n]*\]|\([^)\n]*\)", " ", text)  # the rule's own examples
    return all(w in _FILLER or w in kind_words or w.isdigit() or w in NUMBER_WORDS
               for w in lower_words(text.lower().replace("i.e.", " ").replace("e.g.", " ")))


def _has(word: str, text: str) -> bool:
    """``word`` in ``text`` as a whole word (or phrase), any case."""
    return re.search(r"(?<!\w)" + re.escape(word.strip()) + r"(?!\w)", text, re.I) is not None


@dataclass(frozen=True)
class FormatRule:
    """One of IFEval's format instructions for every Agent turn (module doc); ``n`` the count it names,
    ``phrase`` the postscript marker or the end phrase."""

    kind: Kind
    n: int = 0
    phrase: str = ""

    def broken_by(self, text: str) -> bool:
        return not self._kept(text)

    def _kept(self, text: str) -> bool:
        value = text.strip()
        if self.kind == "no_comma":
            return "," not in text
        if self.kind == "json":
            for fence in ("```json", "```Json", "```JSON", "```"):
                value = value.removeprefix(fence)
            value = value.removesuffix("```").strip()
            try:
                json.loads(value)
            except ValueError:
                return False
            return True
        if self.kind == "title":
            return any(t.lstrip("<").rstrip(">").strip() for t in re.findall(r"<<[^\n]+>>", text))
        if self.kind == "postscript":
            pattern = r"\s*p\.\s?p\.\s?s.*$" if self.phrase == "P.P.S" else r"\s*p\.\s?s\..*$"
            return bool(re.findall(pattern, text.lower(), flags=re.MULTILINE))
        if self.kind == "quotation":
            return len(value) > 1 and value[0] == '"' and value[-1] == '"'
        if self.kind == "end_phrase":
            return value.strip('"').lower().endswith(self.phrase.strip().lower())
        if self.kind == "placeholders":
            return len(re.findall(r"\[.*?\]", text)) >= self.n
        if self.kind == "bullets":
            return len(re.findall(r"^\s*\*[^\*].*$", text, re.M)) + len(re.findall(r"^\s*-.*$", text, re.M)) == self.n
        singles = [h for h in re.findall(r"\*[^\n\*]*\*", text) if h.strip("*").strip()]
        doubles = [h for h in re.findall(r"\*\*[^\n\*]*\*\*", text) if h.removeprefix("**").removesuffix("**").strip()]
        return len(singles) + len(doubles) >= self.n

    def describe(self, text: str) -> str:
        """What the Agent turn lacks or holds against the rule, for the evidence."""
        value, placeholders = text.strip(), len(re.findall(r"\[.*?\]", text))
        return {
            "no_comma": f"{text.count(',')} comma{'s' * (text.count(',') != 1)}; the rule allows none",
            "json": "the reply is not valid JSON",
            "title": "no <<title>> in the reply",
            "postscript": f"no postscript starting with {self.phrase}",
            "quotation": "the reply is not wrapped in double quotation marks",
            "end_phrase": f"the reply ends with {value[-40:]!r}, not {self.phrase!r}",
            "placeholders": f"{placeholders} [placeholders]; the rule asks for at least {self.n}",
            "bullets": f"the rule asks for exactly {self.n} bullet point{'s' * (self.n != 1)}",
            "highlights": f"fewer than {self.n} *highlighted* sections",
        }[self.kind]


@dataclass(frozen=True)
class RequiredWords:
    """Every one of ``words`` in each Agent turn (``conditional``: in the turns the condition applies to, which
    the cross-encoder reads; code only sees that a turn holding them keeps the rule)."""

    words: tuple[str, ...]
    conditional: bool = False

    def kept_by(self, text: str) -> bool:
        return all(_has(w, text) for w in self.words)

    def broken_by(self, text: str) -> bool:
        return not self.conditional and not self.kept_by(text)

    def describe(self, text: str) -> str:
        missing = [w for w in self.words if not _has(w, text)]
        return f"{', '.join(repr(w) for w in missing)} missing; the rule asks for {len(self.words)} word(s)"


@dataclass(frozen=True)
class ForbiddenWords:
    """None of ``words`` in any Agent turn."""

    words: tuple[str, ...]

    def broken_by(self, text: str) -> bool:
        return any(_has(w, text) for w in self.words)

    def describe(self, text: str) -> str:
        used = [w for w in self.words if _has(w, text)]
        return f"uses {', '.join(repr(w) for w in used)}, which the rule forbids"


def _format_rule(text: str) -> FormatRule | None:
    unquoted = _QUOTED.sub(" ", text)
    found = [(kind, m) for kind, pattern in _PATTERNS.items() if (m := pattern.search(unquoted))]
    if any(kind == "postscript" for kind, _ in found):  # "add a postscript at the end": the end is the postscript's
        found = [(kind, m) for kind, m in found if kind != "end_phrase"]
    if len(found) != 1:
        return None
    kind, m = found[0]
    negated = NEGATION.search(unquoted)
    if (kind == "no_comma" and not negated) or negations(unquoted) > MAX_NEGATIONS:
        return None  # no negation asks for commas; two ("Never avoid commas") may cancel, in any kind
    if kind == "json" and negated and not re.search(r"\b(?:nothing else|anything (?:outside|before|else))\b", text, re.I):
        return None
    phrase = ""
    if kind == "end_phrase":
        quoted = _quoted(text)
        colon = re.search(r"phrase:\s*(.+?)\s*$", text)
        # an unquoted phrase ends the rule, whose full stop is the rule's ("...: Hope you agree with me.")
        phrase = quoted[0] if quoted else colon.group(1).rstrip(".") if colon else ""
        text = text[: colon.start(1)] if colon and not quoted else text
        negated = NEGATION.search(_NO_MORE.sub(" ", _QUOTED.sub(" ", text)))
    if kind not in ("no_comma", "json") and negated:
        return None
    if not _only_filler(text, _KIND_WORDS[kind]):
        return None
    if kind in ("placeholders", "bullets", "highlights"):
        return FormatRule(kind, n=number(m.group(1)))
    if kind == "postscript":
        return FormatRule(kind, phrase="P.P.S" if "P.P.S" in text else "P.S.")
    if kind == "end_phrase":
        return FormatRule(kind, phrase=phrase) if 0 < len(phrase) < 80 else None
    return FormatRule(kind)


def _words_rule(text: str) -> RequiredWords | ForbiddenWords | None:
    words = tuple(w.strip() for w in _quoted(text) if w.strip())
    if not words:
        literal = _REQUIRED_LITERAL.search(text)
        if literal is None or NEGATION.search(text):
            return None
        return _required(text, literal, (literal.group("url") or literal.group("code"),))
    if not _FORBIDDEN_HINT.search(text):
        return None
    unquoted = _QUOTED.sub(" ", text)
    if NEGATION.search(unquoted):
        if (CONDITION.search(unquoted) or negations(unquoted) > MAX_NEGATIONS
                or not _only_filler(text, _KIND_WORDS["forbidden"])):
            return None
        return ForbiddenWords(words)
    m = _REQUIRED.search(text)
    if not m or len(_quoted(m.group(0))) != len(words) or re.search(r"[\"'”]\s*,?\s+or\s+", m.group(0)):
        return None
    return _required(text, m, words)


def _required(text: str, m: re.Match, words: tuple[str, ...]) -> RequiredWords | None:
    """``words`` required by the span ``m`` of ``text``, when the rest is at most one condition clause and filler."""
    rest = (text[: m.start()] + " " + text[m.end():]).strip()
    conditional = False
    for pattern in (_COND_FRONT, _COND_BACK):
        if (c := pattern.search(rest)) is not None:
            if re.search(r"\bonly\W*$", rest[: c.start()], re.I):
                return None  # "include 'punk' only if ...": the word is allowed under the condition, not required
            rest, conditional = rest[: c.start()] + " " + rest[c.end():], True
            break
    if CONDITION.search(_QUOTED.sub(" ", rest)) or not _only_filler(rest, _KIND_WORDS["required"]):
        return None
    return RequiredWords(words, conditional=conditional)


@lru_cache(maxsize=16384)  # a policy's rules are parsed for its pairs and again for its counted violations
def parse(rule: str) -> FormatRule | RequiredWords | ForbiddenWords | None:
    """The rule as one checkable instruction (module doc), or ``None``: not only that, or a condition (a
    conditional required word is returned with ``conditional`` set: code checks only that a turn keeps it)."""
    text = " ".join(rule.split())
    found = _format_rule(text) if not CONDITION.search(_QUOTED.sub(" ", text)) else None
    words = _words_rule(text)
    if found is not None and words is not None:
        return None  # two instructions in one rule: the cross-encoder reads it
    return found or words
