"""The CSRM as a CoSAlign judge: rank sampled responses and emit DPO preference pairs.

**Rule** (:mod:`csrm.scoring.ranking`): each response gets the estimated error
``3 * 1[verdict = violates] + sigmoid(-reward)``, CoSAlign's error score with the CSRM's verdict standing in for
"contains a disallowed category" and its reward for helpfulness. Responses are ordered by ``(violates, -reward)``.
A pair ``(chosen, rejected)`` is kept iff

- the chosen response is judged compliant (CoSAlign drops pairs whose chosen error is >= 3, so two violating
  responses never make a pair), and
- it ranks strictly above the rejected one (a different verdict, or the same verdict and a higher reward;
  exact ties are dropped), and the error margin exceeds ``min_margin``.

So a violating response is never preferred to a compliant one. **Degenerate text** (:func:`repeats_phrase`: some
word 4-gram occurs twice) ranks below every non-degenerate response of its verdict and is never chosen: the
CSRM's reward credits any fluent-looking non-refusal over a refusal, and in the session-6 sweep DPO on pairs
that chose such text raised the held-out CoSA-Score by +0.12 while the repetition rate of the answers went
from 30% to 51% (the repetition-adjusted score fell, :func:`csrm.alignment.audit.cosa_without_repetition`).
``strategy`` picks which of those pairs to emit:
``all`` (every such pair, as CoSAlign), ``best_vs_rest`` (the best response against each worse one) or
``best_vs_worst`` (one pair per prompt).

The output is a :class:`datasets.Dataset` in TRL's conversational preference format: ``prompt`` is the
conversation as messages with the config as the system message, ``chosen``/``rejected`` are one assistant
message each, plus score columns. It trains as is with ``trl.DPOTrainer``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from datasets import Dataset

from csrm.base.records import Message, as_messages, stable_id
from csrm.base.safety_config import SafetyConfig
from csrm.base.score_types import ScoreItem, ScoreResult
from csrm.scoring.ranking import VIOLATION_COST, estimated_error, rank_key
from csrm.scoring.thresholds import config_key

STRATEGIES = ("all", "best_vs_rest", "best_vs_worst")
SCORE_COLUMNS = ("chosen_p_comply", "rejected_p_comply", "chosen_reward", "rejected_reward", "chosen_error",
                 "rejected_error", "margin")
COLUMNS = ("prompt", "chosen", "rejected", "config", "config_id", "prompt_id", *SCORE_COLUMNS)
_WORD = re.compile(r"\w+")


def repeats_phrase(text: str, n: int = 4) -> bool:
    """True when some word ``n``-gram of ``text`` occurs twice (case-insensitive): degenerate repetition."""
    words = [w.lower() for w in _WORD.findall(text)]
    grams = Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
    return any(c > 1 for c in grams.values())


@dataclass
class JudgeInput:
    """Several candidate responses to one prompt (or conversation) under one config."""

    config: str | SafetyConfig
    prompt: str | list[Message]
    responses: list[str]
    prompt_id: str = ""


def preference_pairs(results: Sequence[ScoreResult], *, strategy: str = "all", min_margin: float = 0.0,
                     degenerate: Sequence[bool] | None = None) -> list[tuple[int, int]]:
    """``(chosen, rejected)`` index pairs among ``results`` under the module's rule; ``degenerate[i]`` marks
    response ``i`` as degenerate text (ranked below the non-degenerate ones of its verdict, never chosen)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    bad = list(degenerate) if degenerate is not None else [False] * len(results)
    keys = [(violates, int(b), neg_reward) for (violates, neg_reward), b
            in zip(map(rank_key, results), bad, strict=True)]
    order = sorted(range(len(results)), key=lambda i: (keys[i], i))
    errors = [estimated_error(r) for r in results]

    def keep(c: int, r: int) -> bool:
        if not results[c].complies or bad[c] or not keys[c] < keys[r]:
            return False
        return min_margin <= 0 or errors[r] - errors[c] > min_margin

    if strategy == "all":
        pairs = [(c, r) for pos, c in enumerate(order) for r in order[pos + 1:]]
    elif strategy == "best_vs_rest":
        pairs = [(order[0], r) for r in order[1:]] if order else []
    else:
        pairs = [(order[0], order[-1])] if len(order) > 1 else []
    return [(c, r) for c, r in pairs if keep(c, r)]


def system_prompt_messages(config_text: str, prompt: str | list[Message]) -> list[Message]:
    """The conversation with the config as its system message (merged into an existing leading one)."""
    messages = as_messages(prompt)
    if messages and messages[0]["role"] == "system":
        return [{"role": "system", "content": f"{config_text}\n\n{messages[0]['content']}"}, *messages[1:]]
    return [{"role": "system", "content": config_text}, *messages]


def _as_input(entry: JudgeInput | Mapping[str, Any]) -> JudgeInput:
    if isinstance(entry, JudgeInput):
        return entry
    prompt = entry.get("messages") if entry.get("messages") is not None else entry.get("prompt")
    return JudgeInput(entry["config"], prompt, list(entry["responses"]), str(entry.get("prompt_id") or ""))


def build_preference_dataset(scorer, inputs: Iterable[JudgeInput | Mapping[str, Any]], *, strategy: str = "all",
                             min_margin: float = 0.0) -> Dataset:
    """Score every response with ``scorer`` (one batched call) and return the DPO pairs as a Dataset.

    ``inputs``: :class:`JudgeInput` or dicts with ``config``, ``prompt`` or ``messages``, ``responses``.
    ``scorer``: a :class:`csrm.scoring.scorer.Scorer` (anything with ``render`` and ``score_items``).
    """
    entries = [_as_input(e) for e in inputs]
    texts = [scorer.render(e.config) for e in entries]
    thresholds = [scorer.threshold_for(e.config) for e in entries]
    items = [ScoreItem(text, as_messages(e.prompt), r) for e, text in zip(entries, texts, strict=True)
             for r in e.responses]
    results = scorer.score_items(items, [t for e, t in zip(entries, thresholds, strict=True) for _ in e.responses])
    rows: list[dict[str, Any]] = []
    start = 0
    for entry, text in zip(entries, texts, strict=True):
        group = results[start:start + len(entry.responses)]
        start += len(entry.responses)
        prompt = system_prompt_messages(text, entry.prompt)
        prompt_id = entry.prompt_id or stable_id(text, prompt)
        degenerate = [repeats_phrase(r) for r in entry.responses]
        for c, r in preference_pairs(group, strategy=strategy, min_margin=min_margin, degenerate=degenerate):
            chosen, rejected = group[c], group[r]
            rows.append({
                "prompt": prompt,
                "chosen": [{"role": "assistant", "content": entry.responses[c]}],
                "rejected": [{"role": "assistant", "content": entry.responses[r]}],
                "config": text, "config_id": config_key(text), "prompt_id": prompt_id,
                "chosen_p_comply": chosen.p_comply, "rejected_p_comply": rejected.p_comply,
                "chosen_reward": chosen.reward, "rejected_reward": rejected.reward,
                "chosen_error": estimated_error(chosen), "rejected_error": estimated_error(rejected),
                "margin": estimated_error(rejected) - estimated_error(chosen),
            })
    if not rows:
        return Dataset.from_dict({name: [] for name in COLUMNS})
    return Dataset.from_list(rows)


__all__ = ["COLUMNS", "VIOLATION_COST", "JudgeInput", "build_preference_dataset", "preference_pairs",
           "repeats_phrase"]
