"""Config synthesis targeted at one record, and its compliance label.

For a record with (allowable) categories C and severity s, candidate policies are drawn by mode:

- ``exact``: allow exactly C, each at a level >= s (complies, unless C holds "Other Harms").
- ``superset``: C plus 1-3 extra categories at random levels (complies).
- ``none``: nothing allowed (violates whenever C is non-empty).
- ``drop_one``: C minus one category (maybe plus extras): not a superset, so it violates.
- ``severity_threshold``: every c in C allowed up to exactly s (complies) and the same policy with one
  category lowered to s-1 (violates): adjacent severities flip the label. Only for records whose
  severity the source graded (``severity_known``).

"Other Harms" (non-allowable categories) is never put in a policy. Labels come from
:func:`csrm.base.compliance.complies` only. A record with ``uncertain`` categories (unknown source flags) gets a
label only where the known and the worst case agree; otherwise the (record, config) is dropped.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from augmentation.recipe import MODES
from csrm.base.compliance import complies
from csrm.base.records import SourceRecord
from csrm.base.safety_config import SafetyConfig
from csrm.base.taxonomy import RiskTaxonomy


@dataclass(frozen=True)
class Candidate:
    """A synthesized policy (category -> highest allowed severity) and the mode that made it."""

    allow: tuple[tuple[str, int], ...]
    mode: str

    @property
    def allow_map(self) -> dict[str, int]:
        return dict(self.allow)

    @cached_property
    def config(self) -> SafetyConfig:
        return SafetyConfig(allow=self.allow_map, name=self.mode)

    @cached_property
    def policy_key(self) -> str:
        return self.config.policy_key


def worst_case(record: SourceRecord, taxonomy: RiskTaxonomy) -> tuple[tuple[str, ...], int]:
    """Categories and severity if every uncertain category were present at its worst severity."""
    uncertain: dict[str, int] = getattr(record, "uncertain", {}) or {}
    if not uncertain:
        return tuple(record.categories), record.severity
    cats = taxonomy.check([*record.categories, *uncertain])
    return cats, max([record.severity, *uncertain.values()])


def record_label(config: SafetyConfig, record: SourceRecord, taxonomy: RiskTaxonomy | None = None) -> int | None:
    """1 = complies, 0 = violates, None = depends on labels the source left unknown."""
    known = complies(config, record.categories, record.severity)
    if getattr(record, "uncertain", None):
        cats, severity = worst_case(record, taxonomy or RiskTaxonomy.default())
        if complies(config, cats, severity) != known:
            return None
    return int(known)


def candidate_configs(record: SourceRecord, taxonomy: RiskTaxonomy, rng: random.Random, *,
                      modes: Sequence[str] = MODES, draws: int = 2) -> list[Candidate]:
    """Candidate policies for ``record`` (deduplicated by policy key, first mode kept), unfiltered."""
    allowable = taxonomy.allowable_names
    views = [(tuple(c for c in record.categories if c in allowable), record.severity)]
    if getattr(record, "uncertain", None):
        cats, severity = worst_case(record, taxonomy)
        views.append((tuple(c for c in cats if c in allowable), severity))
    severity_known = getattr(record, "severity_known", True)
    out: dict[tuple[tuple[str, int], ...], Candidate] = {}

    def add(allow: dict[str, int], mode: str) -> None:
        items = tuple((n, allow[n]) for n in taxonomy.names if allow.get(n, 0) > 0)
        out.setdefault(items, Candidate(items, mode))

    def at_least(cats: tuple[str, ...], s: int) -> dict[str, int]:
        return {c: rng.randint(max(s, 1), 3) for c in cats}

    def extras(cats: tuple[str, ...], k_max: int = 3) -> dict[str, int]:
        others = [n for n in allowable if n not in cats]
        if not others:
            return {}
        chosen = rng.sample(others, rng.randint(1, min(k_max, len(others))))
        return {c: rng.randint(1, 3) for c in chosen}

    for _ in range(draws):
        for cats, s in views:
            if "exact" in modes and cats:
                add(at_least(cats, s), "exact")
            if "superset" in modes:
                more = extras(cats)
                if more:
                    add({**more, **at_least(cats, s)}, "superset")
            if "none" in modes:
                add({}, "none")
            if "drop_one" in modes and cats:
                dropped = rng.choice(cats)
                keep = at_least(tuple(c for c in cats if c != dropped), s)
                more = extras(tuple(cats)) if (rng.random() < 0.5 or not keep) else {}
                if keep or more:
                    add({**more, **keep}, "drop_one")
            if "severity_threshold" in modes and cats and s >= 1 and severity_known:
                base = {c: s for c in cats}
                if rng.random() < 0.3:
                    base = {**extras(cats, 2), **base}
                add(base, "severity_threshold")
                lowered = dict(base)
                lowered[rng.choice(cats)] = s - 1
                add(lowered, "severity_threshold")
    return list(out.values())


def select(labelled: list[tuple[Candidate, int]], n: int, rng: random.Random) -> list[tuple[Candidate, int]]:
    """Up to ``n`` candidates, alternating compliant and violating ones (random start), spread over modes."""
    if n <= 0:
        return []
    pools = {label: _mode_round_robin([c for c in labelled if c[1] == label], rng) for label in (1, 0)}
    order = [1, 0] if rng.random() < 0.5 else [0, 1]
    picked: list[tuple[Candidate, int]] = []
    while len(picked) < n and (pools[0] or pools[1]):
        for label in order:
            if pools[label] and len(picked) < n:
                picked.append(pools[label].pop(0))
    return picked


def _mode_round_robin(items: list[tuple[Candidate, int]], rng: random.Random) -> list[tuple[Candidate, int]]:
    """Shuffle, then interleave by mode so the first picks cover as many modes as possible."""
    by_mode: dict[str, list[tuple[Candidate, int]]] = {}
    for item in items:
        by_mode.setdefault(item[0].mode, []).append(item)
    modes = sorted(by_mode)
    rng.shuffle(modes)
    for mode in modes:
        rng.shuffle(by_mode[mode])
    out = []
    while any(by_mode.values()):
        for mode in modes:
            if by_mode[mode]:
                out.append(by_mode[mode].pop(0))
    return out


@dataclass
class SynthesizedConfig:
    """A rendered synthesized config and what it means for the record it was made for."""

    config: SafetyConfig  # text = rendered natural language, allow = the structured policy
    mode: str
    label: int  # 1 = the record complies, 0 = it violates
    template: str

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "mode": self.mode, "label": self.label, "template": self.template}
