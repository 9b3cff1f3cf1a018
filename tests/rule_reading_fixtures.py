"""Tiny rule sets in the DynaBench hub schema and fake scorers whose answers the rule-reading tests control
(tests/eval/test_rule_reading.py, test_rule_clusters.py): one that reads the rules (1.0 on swap, removal and
pairs), a config-blind one (0.5), and a length-keyed one (the "shorter policy is the FAIL one" heuristic)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from csrm.base.rule_text import format_rules, split_rules
from csrm.base.score_types import ScoreItem, ScoreResult
from eval.benchmarks import dynabench
from eval.items import DEV, TEST, EvalItem

WORDS = {"leakage": ["banana", "cherry", "mango"], "experience": ["violet", "crimson", "teal"]}


def rule(word: str) -> str:
    return f'Never say the word "{word}".'


def row(policy: str, said: str, label: str, group: str, violated: list[int], **extra: Any) -> dict[str, Any]:
    metadata = {"business_impact": group, "family": group, "rules_violated": violated,
                "num_rules": len(split_rules(policy)), **extra}
    return {"policy": policy, "transcript": f"User: tell me something\nAgent: Here it is: {said}.",
            "label": label, "base_id": f"{group}-{said}-{label}", "metadata": json.dumps(metadata)}


def rule_rows() -> list[dict[str, Any]]:
    """Single-rule FAIL items of two groups; multi-rule FAIL items (violated rule in the middle, numbering
    from 0 as DynaBench writes it) each with a PASS twin (same transcript, the violated rule replaced); PASS
    items under an unrelated rule. PASS twins are longer for two pairs and shorter for one."""
    rows = []
    for group, words in WORDS.items():
        for word in words:
            rows.append(row(format_rules([rule(word)], start=0), f"I love {word}", "FAIL", group, [0]))
    fillers = ["Be polite.", "Answer in English at all times, please.", "No emojis."]
    for k, (group, word) in enumerate([("leakage", "papaya"), ("experience", "amber"), ("leakage", "kiwi")]):
        said = f"{word} is great"
        fail = format_rules([fillers[k], rule(word), "Keep answers short."], start=0, blank_line=True)
        twin_rules = [fillers[k], "Always greet the user warmly by name." if k < 2 else "Hi.", "Keep answers short."]
        rows.append(row(fail, said, "FAIL", group, [1]))
        rows.append(row(format_rules(twin_rules, start=0, blank_line=True), said, "PASS", group, []))
    for group, word in (("leakage", "plum"), ("experience", "navy")):
        rows.append(row(format_rules([rule(word), "Be kind."], start=0), "nothing special", "PASS", group, []))
    return rows


def make_items(rows: list[dict[str, Any]] | None = None) -> list[EvalItem]:
    """Items through the DynaBench loader; every third item (and both classes) on the dev slice."""
    items, _ = dynabench.build_items({"test": rows or rule_rows()}, "fake")
    return [dataclasses.replace(it, split=DEV if i % 3 == 0 else TEST) for i, it in enumerate(items)]


@dataclass
class EvidenceResult(ScoreResult):
    evidence: Any = None


def said(item: ScoreItem) -> str:
    return " ".join([m["content"] for m in item.messages if m["role"] == "assistant"] + [item.response or ""])


class Reader:
    """Reads the rules: a violation iff an agent turn says a word a rule forbids (or leaks the phone number
    the length test's policy forbids); names the rule it found as evidence, or a wrong one if asked."""

    def __init__(self, evidence: bool = False, wrong_rule: bool = False):
        self.evidence, self.wrong_rule, self.calls = evidence, wrong_rule, 0

    def score_items(self, items: list[ScoreItem]) -> list[ScoreResult]:
        self.calls += 1
        out = []
        for it in items:
            text = said(it)
            broken = [r.number for r in split_rules(it.config)
                      if '"' in r.text and r.text.split('"')[1] in text]
            broken += [r.number for r in split_rules(it.config) if "contact details" in r.text and "555-" in text]
            p = 0.9 if broken else 0.1
            evidence = (SimpleNamespace(rule_number=(broken[0] + 7 if self.wrong_rule else broken[0]))
                        if broken and self.evidence else None)
            out.append(EvidenceResult(p_comply=1 - p, reward=-p, complies=p < 0.5, threshold=0.5, evidence=evidence))
        return out


class Blind:
    """Ignores the policy: P(violation) from the transcript alone."""

    def score_items(self, items: list[ScoreItem]) -> list[ScoreResult]:
        return [ScoreResult(1 - (p := (len(said(it)) % 7) / 10 + 0.2), -p, p < 0.5, 0.5) for it in items]


class LengthKeyed:
    """P(violation) falls with the policy's length (and ignores everything else)."""

    def score_items(self, items: list[ScoreItem]) -> list[ScoreResult]:
        return [ScoreResult(1 - (p := 1 / (1 + len(it.config) / 50)), -p, p < 0.5, 0.5) for it in items]
