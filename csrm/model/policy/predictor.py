"""Score items with a policy judge: route each policy's units to the reader made for them, then combine.

For every item the router (:mod:`csrm.model.policy.router`) splits the policy into what the **category reader**
reads (allow lists over the risk taxonomy) and what the **rule judge** reads (free-text rules). Each reader
scores its part with its own calibration; the item complies iff it complies with both parts, so

- ``p_comply = p_category * p_rules`` (a part the policy does not have counts as 1): the two readers' errors
  are treated as independent, which they are in the sense that matters (different inputs, different weights);
- ``reward = reward_category + reward_rules`` (a missing part adds 0): both are higher-is-better, and a
  violation of either part lowers the sum;
- ``evidence``: the rule judge's (the rule and the turn that drove its verdict), where the policy has rules;
- the verdict's threshold (:meth:`PolicyPredictor.default_threshold`): the reader's own for a policy only one
  reader reads, so those policies get exactly that reader's verdicts; the smaller of the two for a mixed policy,
  so every item either reader would flag alone is flagged.

A policy only one reader reads is passed to it unchanged, so its scores are that reader's scores to the bit.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from csrm.base.errors import InputError
from csrm.base.score_types import ScoreItem
from csrm.model.policy.router import CATEGORY, MIXED, Route, Router
from csrm.model.policy.saved import PARTS, PolicyJudgeModel
from csrm.model.sentence_embedder import Embed, SentenceEmbedder

FAMILY = "policy"
ITEMS_PER_CHUNK = 256
ROUTE_CACHE = 4096  # distinct policies remembered (a policy is routed once however many items share it)


class PolicyPredictor:
    """A policy judge's router and its two readers' predictors (module doc), behind
    :class:`csrm.scoring.scorer.Scorer`. ``options`` go to both readers; an option either reader does not support
    is refused by that reader (:func:`csrm.model.registry.refuse_unsupported`), not dropped. ``embed``: the
    router's sentence encoder (tests pass a small stand-in)."""

    def __init__(self, model: PolicyJudgeModel, tokenizer: Any = None, *, embed: Embed | None = None, **options: Any):
        from csrm.model.registry import saved_family

        if tokenizer is not None:
            raise InputError("a policy judge has no tokenizer of its own (its readers load theirs)", field="tokenizer")
        self.model = model
        self.router = Router.from_dict(model.config.router)
        self.embed = embed if embed is not None else SentenceEmbedder(self.router.encoder)
        self.parts = {}
        for part in PARTS:
            folder = model.part_dir(part)
            family = saved_family(folder)
            if family.name == FAMILY:
                raise InputError("a policy judge cannot hold another policy judge", path=str(folder))
            self.parts[part] = family.load("predictor").from_pretrained(folder, **options)
        category = self.parts["category"]
        self.tokenizer = None
        self.device = getattr(category, "device", torch.device("cpu"))
        self.max_tokens = getattr(category, "max_tokens", None)
        self.bf16, self.prefix_cache = False, False
        self._routes: dict[str, Route] = {}

    @classmethod
    def from_pretrained(cls, path: str | Path, *, trust_remote_code: bool = False, dtype: torch.dtype | None = None,
                        **options: Any) -> PolicyPredictor:
        """A saved policy judge (folder or hub id); ``dtype`` must be unset (each reader scores at its own)."""
        from csrm.model.registry import refuse_unsupported

        refuse_unsupported(FAMILY, {"dtype": dtype})
        return cls(PolicyJudgeModel.from_pretrained(path, trust_remote_code=trust_remote_code), **options)

    def route(self, policy: str) -> Route:
        """The policy's :class:`~csrm.model.policy.router.Route` (cached by text)."""
        route = self._routes.get(policy)
        if route is None:
            if len(self._routes) >= ROUTE_CACHE:
                self._routes.clear()
            route = self._routes[policy] = self.router.route(policy, self.embed)
        return route

    def default_threshold(self, policy: str) -> float:
        """The cut on P(violation) for a policy no per-config threshold names (module doc); a global ``threshold``
        fitted on the judge itself, where there is one, for every policy."""
        if self.model.config.threshold is not None:
            return float(self.model.config.threshold)
        thresholds = self.model.config.thresholds
        kind = self.route(policy).kind
        if kind == MIXED:
            return float(min(thresholds["category"], thresholds["rules"]))
        return float(thresholds["category" if kind == CATEGORY else "rules"])

    def clear_cache(self) -> None:
        """Forget cached routes and the readers' caches (``csrm score`` starts each block so)."""
        self._routes.clear()
        for predictor in self.parts.values():
            clear = getattr(predictor, "clear_cache", None)
            if clear is not None:
                clear()

    def forward(self, items: Sequence[ScoreItem]) -> Iterator[tuple[list[int], list[float], list[float], list[dict]]]:
        """Per chunk of items: (item indices, p_comply, rewards, one ``{"evidence": ...}`` or ``{}`` each)."""
        items = list(items)
        for start in range(0, len(items), ITEMS_PER_CHUNK):
            chunk = items[start:start + ITEMS_PER_CHUNK]
            routes = [self.route(item.config) for item in chunk]
            p_comply, rewards = np.ones(len(chunk)), np.zeros(len(chunk))
            fields: list[dict] = [{} for _ in chunk]
            for part, text_of in (("category", lambda r: r.category), ("rules", lambda r: r.rules)):
                chosen = [i for i, r in enumerate(routes) if text_of(r) is not None]
                if not chosen:
                    continue
                sub = [ScoreItem(text_of(routes[i]), chunk[i].messages, chunk[i].response, chunk[i].item_id)
                       for i in chosen]
                for indices, probs, part_rewards, *extra in self.parts[part].forward(sub):
                    for k, j in enumerate(indices):
                        i = chosen[j]
                        p_comply[i] *= probs[k]
                        rewards[i] += part_rewards[k]
                        if extra:
                            fields[i].update(extra[0][k])
            yield list(range(start, start + len(chunk))), p_comply.tolist(), rewards.tolist(), fields

    def raw_outputs(self, items: Sequence[ScoreItem]) -> tuple[np.ndarray, np.ndarray]:
        """Refused: a policy judge has no temperature of its own; each reader was calibrated when it was trained."""
        raise InputError("a policy judge is calibrated through its readers (calibrate the category reader, then "
                         "compose again); it has no temperature of its own", field="model")
