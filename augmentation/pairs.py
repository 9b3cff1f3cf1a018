"""Preference pairs: two responses to one conversation under one config, ordered by the error score.

Each response gets ``csrm.base.compliance.error_score`` (CoSAlign's rule extended with severity: 1 if unhelpful,
+0.1 per allowed category used, +(2 + severity) per violated category). Any two responses with different
errors form a pair, the lower error chosen and ``margin`` = the gap; a pair whose chosen error is
>= ``VIOLATION_THRESHOLD`` (3) is dropped, so the chosen side never violates the config. A response of
``None`` (request-level record) stands for "the request answered in full" and is paired with refusals only.

:func:`trl_rows` writes pairs in TRL's conversational ``prompt`` / ``chosen`` / ``rejected`` format (the config
as the system message); ``csrm augment`` writes them as ``pairs_trl.<split>.jsonl`` when the recipe's
``trl_pairs`` is on.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from itertools import combinations
from typing import Any

from augmentation.synthesis import record_label
from csrm.base.compliance import VIOLATION_THRESHOLD, error_score
from csrm.base.records import PreferencePair, SourceRecord
from csrm.base.safety_config import SafetyConfig
from csrm.base.taxonomy import RiskTaxonomy


def record_error(config: SafetyConfig, record: SourceRecord) -> float:
    """The record's error under ``config``, rounded so equal errors compare equal."""
    return round(error_score(config, record.categories, record.severity, helpful=record.helpful), 6)


def make_pairs(config: SafetyConfig, pool: Sequence[SourceRecord], *, taxonomy: RiskTaxonomy | None = None,
               rng: random.Random | None = None, max_pairs: int = 0) -> list[PreferencePair]:
    """All valid pairs among ``pool`` (one conversation) under ``config``; ``max_pairs`` > 0 samples that many.

    Records whose label under ``config`` is uncertain are left out.
    """
    scored = [(r, record_error(config, r)) for r in pool if record_label(config, r, taxonomy) is not None]
    pairs = []
    for (a, err_a), (b, err_b) in combinations(scored, 2):
        if err_a == err_b or a.response == b.response:
            continue
        (chosen, low), (rejected, high) = sorted([(a, err_a), (b, err_b)], key=lambda item: item[1])
        if low >= VIOLATION_THRESHOLD:
            continue
        pairs.append(PreferencePair(config_id=config.id, config_text=config.text, messages=chosen.messages,
                                    chosen=chosen.response, rejected=rejected.response, chosen_error=low,
                                    rejected_error=high, margin=round(high - low, 6), source=chosen.source,
                                    prompt_id=chosen.prompt_id))
    if max_pairs and len(pairs) > max_pairs:
        rng = rng or random.Random(0)
        keep = sorted(rng.sample(range(len(pairs)), max_pairs))
        pairs = [pairs[i] for i in keep]
    return pairs


# -- TRL's preference format -------------------------------------------------------------------------------
TRL_FILE = "pairs_trl.{split}.jsonl"


def trl_row(pair: PreferencePair) -> dict[str, list[dict[str, str]]] | None:
    """``pair`` as TRL's conversational preference row (what ``trl.RewardTrainer`` and ``DPOTrainer`` read
    unchanged): ``prompt`` = the safety config as the system message, then the conversation; ``chosen`` and
    ``rejected`` = one assistant message each. The config goes in the system message because that is where
    csrm's exports and ``csrm.scoring.reward_funcs`` read it (the first system message is the config).

    ``None`` for a pair one of whose sides is ``None``: that side stands for "the request answered in full"
    (request-level records have no response text), so there is no message to train on."""
    if pair.chosen is None or pair.rejected is None:
        return None
    if not pair.config_text.strip():
        raise ValueError(f"pair {pair.pair_id}: empty config_text (TRL rows need the config as text)")
    return {"prompt": [{"role": "system", "content": pair.config_text}, *({"role": m["role"], "content": m["content"]}
                                                                          for m in pair.messages)],
            "chosen": [{"role": "assistant", "content": pair.chosen}],
            "rejected": [{"role": "assistant", "content": pair.rejected}]}


def trl_rows(pairs: Sequence[PreferencePair]) -> tuple[list[dict[str, Any]], int]:
    """(TRL rows of ``pairs`` in order, how many pairs were left out for a ``None`` side; see :func:`trl_row`)."""
    rows = [trl_row(p) for p in pairs]
    kept = [r for r in rows if r is not None]
    return kept, len(rows) - len(kept)
