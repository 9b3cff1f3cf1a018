"""Labelled evaluation items: what every benchmark loader returns and every report reads.

An :class:`EvalItem` wraps a :class:`~csrm.base.score_types.ScoreItem` with its gold label (``1 = violation``, the
positive class everywhere in this package), the config group it belongs to, and the *views* it takes part
in. A view is one framing of a benchmark (e.g. CoSApien with partially-allowed prompts counted as violations,
the headline, or as compliant): ``views`` maps view name -> the item's label in that view; an item absent
from a view is simply not counted there.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from csrm.base.records import stable_id
from csrm.base.score_types import ScoreItem

HEADLINE = "headline"
DEV, TEST = "dev", "test"


@dataclass
class EvalItem:
    """One scored unit of a benchmark with its gold label(s)."""

    item: ScoreItem
    label_violation: int  # 1 = a full answer / the response violates the config (headline framing)
    group: str  # the config (or config family) the item belongs to; metrics are also reported per group
    benchmark: str
    kind: str = ""  # the source's own label, e.g. "partially allowed", "situation 2", "FAIL"
    views: dict[str, int] = field(default_factory=dict)  # view name -> label; default {"headline": label}
    split: str = TEST  # "dev" items only tune thresholds; they never enter test numbers
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.label_violation not in (0, 1):
            raise ValueError(f"label_violation must be 0 or 1, got {self.label_violation!r}")
        if not self.views:
            self.views = {HEADLINE: self.label_violation}
        if not self.item.item_id:
            self.item.item_id = stable_id(self.benchmark, self.group, self.item.config, self.item.messages,
                                          self.item.response)

    @property
    def item_id(self) -> str:
        return self.item.item_id


def blind_items(items: Sequence[EvalItem]) -> list[EvalItem]:
    """Copies of ``items`` with the config text blanked, to evaluate a config-blind classifier.

    Labels, groups and ids are kept, so the blind model's numbers line up with the config-aware model's.
    """
    return [dataclasses.replace(it, item=dataclasses.replace(it.item, config="")) for it in items]


def _unit_hash(*parts: Any) -> float:
    digest = hashlib.sha1(stable_id(*parts, length=40).encode()).hexdigest()
    return int(digest[:12], 16) / float(16**12)


def assign_dev_slice(items: Sequence[EvalItem], fraction: float, *, salt: str = "csrm-eval-dev") -> list[EvalItem]:
    """Mark a deterministic ``fraction`` of items as dev, stratified by (group, kind).

    Within each stratum items are ordered by a hash of their content (not their position), and the first
    ``round(fraction * n)`` become dev. The choice depends only on the full data, never on ``--limit``.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"dev fraction must be in [0, 1), got {fraction}")
    strata: dict[tuple[str, str], list[EvalItem]] = defaultdict(list)
    for it in items:
        strata[(it.group, it.kind)].append(it)
    dev_ids: set[int] = set()
    for members in strata.values():
        ranked = sorted(members, key=lambda it: _unit_hash(salt, it.item_id))
        dev_ids.update(id(it) for it in ranked[: round(fraction * len(ranked))])
    return [dataclasses.replace(it, split=DEV if id(it) in dev_ids else TEST) for it in items]


def limit_items(items: Sequence[EvalItem], n: int | None, *, salt: str = "csrm-eval-limit") -> list[EvalItem]:
    """At most ``n`` items, spread round-robin over (group, kind) strata in hash order (deterministic).

    A small ``n`` still covers every config and label kind. ``None`` keeps everything. Original order is kept.
    """
    if n is None or n >= len(items):
        return list(items)
    strata: dict[tuple[str, str], list[int]] = defaultdict(list)
    for index, it in enumerate(items):
        strata[(it.group, it.kind)].append(index)
    queues = [sorted(idx, key=lambda i: _unit_hash(salt, items[i].item_id)) for _, idx in sorted(strata.items())]
    chosen: list[int] = []
    depth = 0
    while len(chosen) < n:
        for queue in queues:
            if depth < len(queue) and len(chosen) < n:
                chosen.append(queue[depth])
        depth += 1
    return [items[i] for i in sorted(chosen)]


def split_items(items: Iterable[EvalItem]) -> tuple[list[EvalItem], list[EvalItem]]:
    """(dev items, test items)."""
    dev, test = [], []
    for it in items:
        (dev if it.split == DEV else test).append(it)
    return dev, test
