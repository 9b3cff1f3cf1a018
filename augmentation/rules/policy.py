"""Policy assembly and contrasts: a target rule among verified distractors, numbered, in five variants.

For one scaffold the family gives a target rule, a violating and a compliant transcript. One policy serves
both transcripts (so FAIL and PASS rows differ only in the planted turn, not in the policy), and the same
distractor pool serves every contrast:

- ``original``: the target among 0 to ~15 distractors (the size drawn from a skewed distribution);
- ``shuffled``: the same rules in another order, renumbered (label kept; ``rules_violated`` renumbered);
- ``distractors``: the target buried among 20 to ``max_rules`` rules (label kept);
- ``rule_removed``: the original without the target, renumbered (PASS);
- ``rule_swapped``: the target replaced by the unused distractor closest to it in characters (PASS).

Removal and swap are written for the violating transcript only (on the compliant one they are PASS by
construction and would only add short-policy PASS rows). Distractors are rules of every family (business
rules instantiated with other values, topics and triggers; IFEval rules) kept only when code verifies that
neither transcript breaks them and they share no subject with the target or each other. Labels of every row
are recomputed from all its rules' checks (:func:`label_rows`), never carried over.

Each row also lists the rules whose verdict on it changes when the transcript is lower-cased
(``metadata.case_dependent``: "write in all capital letters", "no all-caps sentences", "start with a capital").
An uncased backbone (all-MiniLM-L6-v2 lower-cases its input) sees the violating and the compliant version of
such a row as the same text, so their labels are noise to it; the rule judge's trainer leaves those pairs out
when its tokenizer is uncased (:mod:`csrm.model.rule.trainer`). Likewise ``metadata.history_dependent`` lists the
(rule, Agent turn) pairs whose verdict needs more of the conversation than that turn and the User turn before it
(:func:`history_dependent`), which a judge reading one pair at a time does not see.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from augmentation.rules.core import RuleItem, Transcript
from csrm.base.rule_text import Turn, format_rules, format_turns, split_rules, split_turns

Distractors = Callable[[random.Random, str, int], list[RuleItem]]


def original_size(rng: random.Random) -> int:
    """Rules in an ``original`` policy: 1 (a quarter), 2-5, 6-15 or 16-30."""
    band = rng.choices(((1, 1), (2, 5), (6, 15), (16, 30)), weights=(25, 35, 28, 12))[0]
    return rng.randint(*band)


def verified_pool(rng: random.Random, split: str, target: RuleItem, transcripts: list[Transcript],
                  sources: list[Distractors], want: int) -> list[RuleItem]:
    """Up to ``want`` distractors no transcript breaks, sharing no subject with the target or each other."""
    used, texts, out = set(target.subjects), {target.text}, []
    per_source = max(4, want // 2 + 25)  # the disclosure, topic and format subjects run out well before
    candidates = [r for source in sources for r in source(rng, split, per_source)]
    rng.shuffle(candidates)
    for rule in candidates:
        if rule.text in texts or rule.subjects & used:
            continue
        if any(rule.check(tr) for tr in transcripts):
            continue
        out.append(rule)
        used |= rule.subjects
        texts.add(rule.text)
        if len(out) >= want:
            break
    return out


def _with_target(rng: random.Random, target: RuleItem, others: list[RuleItem]) -> list[RuleItem]:
    rules = list(others)
    rules.insert(rng.randint(0, len(rules)), target)
    return rules


def contrast_policies(rng: random.Random, target: RuleItem, pool: list[RuleItem], contrasts: list[str],
                      max_rules: int) -> dict[str, list[RuleItem]]:
    """Rule lists per contrast (module doc); a contrast that cannot be built (too few rules) is left out."""
    n = min(original_size(rng), len(pool) + 1)
    small = rng.sample(pool, n - 1)
    original = _with_target(rng, target, small)
    out = {"original": original}
    if "shuffled" in contrasts and len(original) >= 2:
        shuffled = list(original)
        while shuffled == original:
            rng.shuffle(shuffled)
        out["shuffled"] = shuffled
    if "distractors" in contrasts and len(pool) >= 19:
        big = rng.randint(20, min(max_rules, len(pool) + 1))
        out["distractors"] = _with_target(rng, target, rng.sample(pool, big - 1))
    if "rule_removed" in contrasts and len(original) >= 2:
        out["rule_removed"] = [r for r in original if r is not target]
    unused = [r for r in pool if r not in small]
    if "rule_swapped" in contrasts and unused:
        swap = min(unused, key=lambda r: (abs(len(r.text) - len(target.text)), r.text))
        out["rule_swapped"] = [swap if r is target else r for r in original]
    return out


def lowercased(tr: Transcript) -> Transcript:
    """The transcript as an uncased reader sees it: every turn and every planted value lower-cased."""
    out = tr.copy()
    out.turns = [Turn(t.role, t.text.lower()) for t in tr.turns]
    out.secrets = {k: {v.lower() for v in values} for k, values in tr.secrets.items()}
    return out


def case_dependent(rules: list[RuleItem], tr: Transcript) -> list[int]:
    """Numbers (1-based) of the rules whose check gives other turns once the transcript is lower-cased."""
    lowered = lowercased(tr)
    return [k + 1 for k, rule in enumerate(rules) if rule.check(lowered) != rule.check(tr)]


def history_dependent(rules: list[RuleItem], tr: Transcript) -> list[list[int]]:
    """``[rule number, turn index]`` of the (rule, Agent turn) pairs whose verdict changes when the rule is checked
    on the pair's own view (that Agent turn and the User turn right before it) instead of the whole transcript:
    "only after the user was verified" where the verification sits earlier, "introduce yourself in your first
    reply" on a later reply. A judge that reads one pair at a time cannot tell their labels apart."""
    full = [set(rule.check(tr)) for rule in rules]
    out = []
    for t in tr.agent_indices():
        start = t - 1 if t > 0 and tr.turns[t - 1].role == "user" else t
        view = Transcript(tr.turns[start: t + 1], tr.secrets, tr.topics[start: t + 1], tr.domain)
        for k, rule in enumerate(rules):
            if ((t - start) in rule.check(view)) != (t in full[k]):
                out.append([k + 1, t])
    return out


def make_row(rules: list[RuleItem], tr: Transcript, *, family: str, contrast: str, base_id: str, split: str,
             target: RuleItem, variant: str, blank_line: bool, extra: dict | None = None) -> dict:
    """One hub-schema row (metadata as a dict; the writer serialises it) labelled by every rule's check."""
    policy = format_rules([r.text for r in rules], blank_line=blank_line)
    transcript = format_turns(tr.turns)
    violations = sorted([k + 1, t] for k, rule in enumerate(rules) for t in rule.check(tr))
    read_rules, read_turns = split_rules(policy), split_turns(transcript)
    if [r.text for r in read_rules] != [r.text.strip() for r in rules] or read_turns != tr.turns:
        raise ValueError(f"policy/transcript do not read back as written ({family}/{contrast})")
    position = next((k + 1 for k, r in enumerate(rules) if r is target), None)
    meta = {
        "family": family, "contrast": contrast, "rules_violated": sorted({v[0] for v in violations}),
        "violations": violations, "num_rules": len(rules), "num_turns": len(tr.turns),
        "template": target.template, "split": split, "variant": variant, "target_rule": position,
        "rule_families": sorted({r.family for r in rules}), "case_dependent": case_dependent(rules, tr),
        "history_dependent": history_dependent(rules, tr),
    }
    meta.update(extra or {})
    return {"policy": policy, "transcript": transcript, "label": "FAIL" if violations else "PASS",
            "base_id": base_id, "metadata": meta}
