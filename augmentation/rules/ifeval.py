"""Format and style rules: the DynaGuard IFEval rule lists, judged by IFEval's own checkers (lm-eval).

Each rule line of ``dynaguard_ifeval_rules/ifeval_rules.jsonl`` is read by :data:`PARSERS` (one regex per
IFEval instruction); a line that exactly one parser reads becomes a checkable rule: its instruction id and
arguments build lm-eval's checker class from ``lm_eval.tasks.ifeval.instructions_registry.INSTRUCTION_DICT``
(the checkers are reused, never reimplemented), and an Agent turn breaks the rule iff
``checker.check_following(turn)`` is false. The rule applies to every Agent turn. Lines no parser reads,
or several do (compound rules), are left out: their labels could not be checked.

A base transforms every Agent turn of a scaffold to satisfy the rule (:data:`TRANSFORMS`), and in the
violating transcript one turn to break it; the generator then verifies both with the checker. Rule lines are
split by hash of their text, so test reads IFEval wordings never seen in train. Checkers that need
``langdetect`` (case rules) are left out of the distractor pool (they fail on ordinary text anyway).
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from augmentation.rules.core import RuleItem, Transcript, partition
from augmentation.rules.values import ValueBank
from csrm.base.errors import InputError
from csrm.base.rule_text import Turn

with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    # lm-eval tries to download nltk's punkt_tab at import (no network here: it fails quietly); checkers that
    # need punkt (sentence counts) are not parsed below.
    from lm_eval.tasks.ifeval.instructions_registry import INSTRUCTION_DICT
from langdetect import DetectorFactory

DetectorFactory.seed = 0  # langdetect samples at random: seeded, the case checks give the same verdict each run

NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
           "ten": 10, "once": 1, "twice": 2, "a": 1}
_N = r"(\d+|one|two|three|four|five|six|seven|eight|nine|ten)"
_NEG = re.compile(r"\b(do not|don't|does not|doesn't|not|avoid|without|never|refrain|no)\b", re.I)


def _num(text: str) -> int:
    return int(text) if text.isdigit() else NUMBERS[text.lower()]


def _quoted(text: str) -> list[str]:
    return [a or b for a, b in re.findall(r'"([^"]+)"|\'([^\']+)\'', text)]


def _forbidden(t: str) -> dict | None:
    words = _quoted(t)
    if words and _NEG.search(t) and "comma" not in t.lower() and all(len(w.split()) == 1 for w in words):
        return {"forbidden_words": words}
    return None


def _existence(t: str) -> dict | None:
    words = _quoted(t)
    if words and re.search(r"\b(include|contain|mention)\b", t, re.I) and not _NEG.search(t) \
            and not re.search(r"times|at least|once|twice|less than", t, re.I):
        return {"keywords": words}
    return None


def _frequency(t: str) -> dict | None:
    m = re.search(r"\b(?:word|keyword)s? [\"']?([A-Za-z]+)[\"']? should appear (at least|less than|fewer than) "
                  + _N + r" times?", t, re.I)
    if not m:
        return None
    return {"keyword": m.group(1), "frequency": _num(m.group(3)),
            "relation": "at least" if m.group(2).lower() == "at least" else "less than"}


def _words(t: str) -> dict | None:
    m = re.search(r"(at least|less than|fewer than|more than)\s+(\d+)\s+words", t, re.I)
    if m:
        n, rel = int(m.group(2)), m.group(1).lower()
        return {"num_words": n + (1 if rel == "more than" else 0),
                "relation": "less than" if rel in ("less than", "fewer than") else "at least"}
    m = re.search(r"(\d+)\+ words", t)
    return {"num_words": int(m.group(1)), "relation": "at least"} if m else None


def _end(t: str) -> dict | None:
    if not re.search(r"\b(end|finish)\b", t, re.I):
        return None
    m = re.search(r'"([^"]+)"', t) or re.search(r"phrase:\s*(.+?)\.?$", t)
    return {"end_phrase": m.group(1).strip()} if m and len(m.group(1)) < 80 else None


def _capital(t: str) -> dict | None:
    if re.search(r"all capital letters|all caps|capitalize all|in all uppercase", t, re.I) \
            and not re.search(r"at least|times|words (with|in) all capital", t, re.I):
        return {}
    return None


PARSERS: list[tuple[str, Callable[[str], dict | None]]] = [
    ("punctuation:no_comma", lambda t: {} if re.search(r"\bcommas?\b", t, re.I) and _NEG.search(t) else None),
    ("change_case:english_lowercase", lambda t: {} if re.search(r"lower\s?case", t, re.I) else None),
    ("change_case:english_capital", _capital),
    ("keywords:forbidden_words", _forbidden),
    ("keywords:existence", _existence),
    ("keywords:frequency", _frequency),
    ("length_constraints:number_words", _words),
    ("detectable_content:postscript", lambda t: {"postscript_marker": "P.P.S" if "P.P.S" in t else "P.S."}
     if re.search(r"P\.P\.S|P\.S\.|postscript", t) else None),
    ("detectable_format:title", lambda t: {} if "double angular brackets" in t.lower() else None),
    ("detectable_format:number_bullet_lists", lambda t: {"num_bullets": _num(m.group(1))}
     if (m := re.search(rf"exactly {_N} bullet points?", t, re.I)) else None),
    ("detectable_content:number_placeholders", lambda t: {"num_placeholders": _num(m.group(1))}
     if (m := re.search(rf"at least {_N} placeholders?", t, re.I)) else None),
    ("detectable_format:number_highlighted_sections", lambda t: {"num_highlights": _num(m.group(1))}
     if (m := re.search(rf"highlight at least {_N}(?: \w+)? sections?", t, re.I)) else None),
    ("startend:quotation", lambda t: {} if "double quotation marks" in t.lower() else None),
    ("startend:end_checker", _end),
    ("detectable_format:json_format", lambda t: {} if re.search(r"\bJSON\b", t) else None),
    ("detectable_format:constrained_response", lambda t: {} if "My answer is yes" in t else None),
]
# constraints no parser reads (sentence or paragraph counts need nltk data; genres and languages no checker
# here verifies): a rule that names one is left out, even when one parser reads the rest of it
UNREAD = re.compile(r"\bsentences?\b|\bparagraphs?\b|\bsections? \d|\bSECTION\b|language|\bletter [a-z]\b|"
                    r"\b(poem|essay|story|song|rap|blog|itinerary|resume|tweet|limerick|riddle|haiku|joke|"
                    r"email|letter|ad|advertisement|summary|critique|lines?|question|style|tone|twice|once)\b",
                    re.I)
LANGDETECT = {"change_case:english_lowercase", "change_case:english_capital"}
PAD = ("We can go through the remaining details together whenever suits you.",
       "The team has reviewed the request and everything is in order.",
       "Our records were updated this morning and the change is now visible.",
       "You will receive a confirmation message once the process completes.")


@dataclass(frozen=True)
class IFRule:
    text: str
    instruction: str
    kwargs: tuple[tuple[str, Any], ...]

    def checker(self) -> Any:
        checker = INSTRUCTION_DICT[self.instruction](self.instruction)
        checker.build_description(**dict(self.kwargs))
        return checker


def parse(text: str) -> IFRule | None:
    """The rule as one IFEval instruction, or None (no parser or several read it)."""
    found = [(name, kw) for name, parse_one in PARSERS if (kw := parse_one(text)) is not None]
    if len(found) != 1 or UNREAD.search(text):
        return None
    name, kwargs = found[0]
    return IFRule(text, name, tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in kwargs.items())))


def load_rules(path: Path) -> list[IFRule]:
    """Every single-line rule of the file that one parser reads (module doc), de-duplicated, in file order."""
    if not Path(path).is_file():
        raise InputError("IFEval rule file not found", path=str(path), field="rules.ifeval_rules")
    out, seen = [], set()
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        try:
            rules = json.loads(line)["rules"]
        except (json.JSONDecodeError, KeyError) as exc:
            raise InputError(f"not a rule list: {exc}", path=str(path), line=n, field="rules") from exc
        for chunk in re.split(r"\n(?=\d+\. )", rules.strip()):
            text = re.sub(r"^\d+\.\s+", "", chunk).strip()
            if "\n" in text or text in seen:
                continue
            seen.add(text)
            if (rule := parse(text)) is not None:
                out.append(rule)
    return out


def _with_word(text: str, word: str, times: int) -> str:
    return text + "".join(f" I noted {word} here." for _ in range(times))


def _trim(text: str, n: int) -> str:
    return " ".join(text.split()[: max(1, n)])


def _pad(text: str, n: int, rng: random.Random) -> str:
    while len(text.split()) < n:
        text += " " + rng.choice(PAD)
    return text


def transform(rule: IFRule, text: str, satisfy: bool, rng: random.Random) -> str:
    """``text`` rewritten to satisfy (or break) ``rule``; the caller verifies with the checker."""
    kw, s, i = dict(rule.kwargs), satisfy, rule.instruction
    if i == "punctuation:no_comma":
        return text.replace(",", "") if s else "Well, " + text.replace(",", "")
    if i == "change_case:english_lowercase":
        return text.lower() if s else text[:1].upper() + text[1:]
    if i == "change_case:english_capital":
        return text.upper() if s else text
    if i == "keywords:forbidden_words":
        return text if s else _with_word(text, rng.choice(kw["forbidden_words"]), 1)
    if i == "keywords:existence":
        words = list(kw["keywords"]) if s else list(kw["keywords"])[:-1]
        return text + (" Key points: " + ", ".join(words) + "." if words else "")
    if i == "keywords:frequency":  # the scaffold text never holds the keyword: add it n times
        n = kw["frequency"] - (0 if (kw["relation"] == "at least") == s else 1)
        return _with_word(text, kw["keyword"], max(0, n))
    if i == "length_constraints:number_words":
        n, longer = kw["num_words"], (kw["relation"] == "at least") == s
        return _pad(text, n, rng) if longer else _trim(text, n - 1)
    if i == "detectable_content:postscript":
        return f"{text}\n\n{kw['postscript_marker']} Thanks again for reaching out." if s else text
    if i == "detectable_format:title":
        return f"<<Your Request Update>>\n{text}" if s else f"Your Request Update\n{text}"
    if i == "detectable_format:number_bullet_lists":
        n = kw["num_bullets"] if s else kw["num_bullets"] + rng.choice((1, -1) if kw["num_bullets"] > 1 else (1,))
        return text.replace("*", "") + "".join(f"\n* Point {k + 1} of the summary." for k in range(n))
    if i == "detectable_content:number_placeholders":
        n = kw["num_placeholders"] if s else kw["num_placeholders"] - 1
        return text + "".join(f" Contact [name{k}]." for k in range(n))
    if i == "detectable_format:number_highlighted_sections":
        n = kw["num_highlights"] if s else kw["num_highlights"] - 1
        return text.replace("*", "") + "".join(f" *note {k + 1}*" for k in range(n))
    if i == "startend:quotation":
        return f'"{text}"' if s else text
    if i == "startend:end_checker":
        return f"{text} {kw['end_phrase']}" if s else text
    if i == "detectable_format:json_format":
        return json.dumps({"reply": text}) if s else text
    if i == "detectable_format:constrained_response":
        return f"{text} My answer is yes." if s else text
    raise ValueError(f"no transform for {i}")  # pragma: no cover - every parser has one


class Family:
    """The format family over parsed IFEval rules, each with its lm-eval checker."""

    def __init__(self, rules: list[IFRule]):
        split_of = partition([r.text for r in rules], "ifeval-rules")
        self.by_split = {s: [r for r in rules if split_of[r.text] == s] for s in ("train", "dev", "test")}
        self.checkers = {r: r.checker() for r in rules}

    def item(self, rule: IFRule) -> RuleItem:
        checker = self.checkers[rule]
        followed: dict[str, bool] = {}  # one checker run per text: rows re-check a turn in several views

        def check(tr: Transcript) -> list[int]:
            out = []
            for i in tr.agent_indices():
                text = tr.turns[i].text
                if text not in followed:
                    if len(followed) > 50_000:
                        followed.clear()
                    followed[text] = bool(checker.check_following(text))
                if not followed[text]:
                    out.append(i)
            return out

        # two keyword rules may share a policy ("never say X", "include Y"); two length or case rules may not
        subject = rule.instruction + (str(rule.kwargs) if rule.instruction.startswith("keywords:") else "")
        return RuleItem(rule.text, "format", f"ifeval:{rule.text[:60]}", f"format:{rule.text}", check,
                        frozenset({f"ifeval:{subject}"}))

    def make_base(self, rng: random.Random, bank: ValueBank, split: str, skeleton: Transcript):
        rule = rng.choice(self.by_split[split])
        target = self.item(rule)
        pos = rng.choice(skeleton.agent_indices())
        fail, ok = skeleton.copy(), skeleton.copy()
        for i in skeleton.agent_indices():
            good = transform(rule, skeleton.turns[i].text, True, rng)
            ok.turns[i] = Turn("assistant", good)
            fail.turns[i] = Turn("assistant", good if i != pos else transform(rule, skeleton.turns[i].text, False, rng))
        return target, fail, ok, rule.instruction

    def distractors(self, rng: random.Random, bank: ValueBank, split: str, n: int) -> list[RuleItem]:
        pool = [r for r in self.by_split[split] if r.instruction not in LANGDETECT]
        return [self.item(r) for r in rng.sample(pool, min(n, len(pool)))]
