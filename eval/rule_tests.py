"""The contrasts of the rule-reading evaluation (issue #28), built from labelled items without scoring them.

Every test compares a scorer with itself on two inputs that differ in the policy only, so a scorer that
does not read the policy (config-blind) lands at exactly 0.5 (ties count one half), and one that reads it
at 1.0:

- **rule swap**: each single-rule FAIL item (``metadata.num_rules == 1``) is scored again under the policy
  of another single-rule FAIL item whose group (DynaBench: ``business_impact``; generated rule data:
  ``family``) differs, the one closest in character length (ties: the smaller item id). The transcript no
  longer breaks the (new) policy and the length barely changes, so a length cue cannot tell them apart.
- **rule removal**: each FAIL item whose ``rules_violated`` can all be located (each number occurs exactly
  once among the policy's rules, read by :func:`csrm.base.rule_text.split_rules`) is scored again with those
  rules cut out of the policy text; nothing is renumbered and the other rules keep their exact wording and
  spacing. A single-rule policy becomes empty (nothing left to break): reported apart, since an empty
  policy is also the blanked config of the config-blind baseline.
- **within-transcript pairs**: the same transcript (the same conversation and response), FAIL under one
  policy and PASS under another. On DynaBench (Aug) the FAIL policy is nearly always the shorter, so the
  "shorter policy is the FAIL one" heuristic is computed beside it: a length confound, not a reading test.

Items come from the benchmark loader (:mod:`eval.benchmarks.dynabench`, whose ``extra["metadata"]`` holds
the parsed metadata), so the DynaBench dev half and generated rule data in the same schema
(``DIR/rules/{dev,test}.jsonl``, :func:`load_rule_data`) go through one code path.
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from csrm.base.errors import InputError
from csrm.base.io import iter_jsonl
from csrm.base.rule_text import split_rules
from csrm.base.score_types import ScoreItem
from eval.benchmarks import dynabench
from eval.items import DEV, TEST, EvalItem, assign_dev_slice

DYNABENCH_GROUP = "business_impact"
GENERATED_GROUP = "family"


def metadata(item: EvalItem) -> dict[str, Any]:
    """The item's parsed metadata (``{}`` when it has none or it is not a JSON object)."""
    value = item.extra.get("metadata")
    return value if isinstance(value, dict) else {}


def violated(item: EvalItem) -> list[int]:
    """``metadata.rules_violated`` as integers (rule numbers as written in the policy)."""
    out = []
    for number in metadata(item).get("rules_violated") or []:
        try:
            out.append(int(number))
        except (TypeError, ValueError):
            continue
    return out


def transcript_key(item: EvalItem) -> str:
    """One key per transcript as the scorer sees it (conversation and response)."""
    return json.dumps([item.item.messages, item.item.response], sort_keys=True)


def with_policy(item: EvalItem, policy: str) -> ScoreItem:
    """The item's conversation and response under another policy."""
    return dataclasses.replace(item.item, config=policy, item_id="")


@dataclass
class Contrast:
    """One original item and its perturbed copy (``changed``); ``note`` says what differs."""

    index: int  # position of the original among the items it was built from
    changed: ScoreItem
    note: str


def swap_contrasts(items: Sequence[EvalItem], group_key: str = DYNABENCH_GROUP) -> list[Contrast]:
    """Rule swap (module doc): one contrast per single-rule FAIL item that has a donor of another group."""
    singles = [i for i, it in enumerate(items)
               if it.label_violation == 1 and int(metadata(it).get("num_rules") or 0) == 1]
    out = []
    for i in singles:
        group = metadata(items[i]).get(group_key)
        donors = [j for j in singles if metadata(items[j]).get(group_key) != group]
        if not donors:
            continue
        size = len(items[i].item.config)
        j = min(donors, key=lambda d: (abs(len(items[d].item.config) - size), items[d].item_id))
        out.append(Contrast(i, with_policy(items[i], items[j].item.config),
                            f"{group} -> {metadata(items[j]).get(group_key)}"))
    return out


def remove_rules(policy: str, numbers: Sequence[int]) -> str | None:
    """``policy`` with the rules numbered ``numbers`` cut out of its text (other rules untouched, nothing
    renumbered), or ``None`` when some number does not occur exactly once among its rules."""
    rules = split_rules(policy)
    present = [r.number for r in rules]
    if not numbers or any(present.count(n) != 1 for n in numbers):
        return None
    starts, pos = [], 0
    for rule in rules:  # each rule's segment starts at the line its text starts on (the number's line)
        at = policy.find(rule.text, pos)
        if at < 0:
            return None
        starts.append(0 if rule.number is None else policy.rfind("\n", 0, at) + 1)
        pos = at + len(rule.text)
    ends = [*starts[1:], len(policy)]
    kept = "".join(policy[s:e] for r, s, e in zip(rules, starts, ends, strict=True) if r.number not in numbers)
    kept = kept.strip()
    left = [r.number for r in split_rules(kept)]
    if left != [n for n in present if n not in numbers]:
        return None  # cutting changed how the rest parses: not a clean removal
    return kept


def removal_contrasts(items: Sequence[EvalItem]) -> list[Contrast]:
    """Rule removal (module doc): one contrast per FAIL item whose violated rules can be located."""
    out = []
    for i, it in enumerate(items):
        numbers = violated(it)
        if it.label_violation != 1 or not numbers:
            continue
        kept = remove_rules(it.item.config, numbers)
        if kept is not None:
            out.append(Contrast(i, with_policy(it, kept), "empty" if not kept else "rules left"))
    return out


def transcript_pairs(items: Sequence[EvalItem]) -> list[tuple[int, int]]:
    """``(FAIL index, PASS index)`` for every same-transcript pair of a FAIL and a PASS item."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, it in enumerate(items):
        groups[transcript_key(it)].append(i)
    pairs = []
    for members in groups.values():
        fails = [i for i in members if items[i].label_violation == 1]
        passes = [i for i in members if items[i].label_violation == 0]
        pairs += [(f, p) for f in fails for p in passes]
    return pairs


def shorter_policy_share(items: Sequence[EvalItem], pairs: Sequence[tuple[int, int]]) -> float | None:
    """Share of pairs whose FAIL policy is the shorter one (ties one half): the length heuristic."""
    if not pairs:
        return None
    wins = [1.0 if len(items[f].item.config) < len(items[p].item.config)
            else 0.5 if len(items[f].item.config) == len(items[p].item.config) else 0.0 for f, p in pairs]
    return sum(wins) / len(wins)


def load_rule_data(folder: str | Path, *, dev_fraction: float = 0.2) -> tuple[list[EvalItem], str]:
    """Generated rule data in the agreed schema: ``folder/rules/test.jsonl`` (or ``folder/test.jsonl``) as
    test items, ``dev.jsonl`` beside it as dev items (thresholds and the lengths-only probe are fitted on
    it); without ``dev.jsonl``, the benchmark's hash slice of ``test.jsonl`` is dev. Returns
    ``(items, source)``; a missing test file is an :class:`InputError`."""
    root = Path(folder)
    base = root / "rules" if (root / "rules" / "test.jsonl").is_file() else root
    test = base / "test.jsonl"
    if not test.is_file():
        raise InputError("generated rule data not found (expected DIR/rules/test.jsonl)", path=str(root / "rules"))
    rows = {TEST: [row for _, row in iter_jsonl(test)]}
    if (base / "dev.jsonl").is_file():
        rows[DEV] = [row for _, row in iter_jsonl(base / "dev.jsonl")]
    items, _ = dynabench.build_items(rows, str(base))
    if DEV in rows:
        items = [dataclasses.replace(it, benchmark="rules", split=it.extra["split"]) for it in items]
    else:
        items = assign_dev_slice([dataclasses.replace(it, benchmark="rules") for it in items], dev_fraction)
    return items, f"local:{base}"
