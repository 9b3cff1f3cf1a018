"""Turn a model spec from the command line into a scorer (anything with ``score_items``).

- ``zero-shot:<hf id | folder | file.gguf | smollm2>``: the zero-shot LLM judge baseline
  (:mod:`eval.zero_shot`);
- ``probe:clause-similarity`` / ``probe:category-logreg``: the frozen-embedding probes (:mod:`eval.probes`);
- ``probe:surface``: the lengths-only baseline fitted on each benchmark's dev items (:mod:`eval.surface`);
- anything else: a trained CSRM (or config-blind CSRM) folder, loaded by ``csrm.scoring.scorer.load(spec)``.
"""

from __future__ import annotations

from typing import Any

from csrm.base.score_types import Scorer

ZERO_SHOT_PREFIX = "zero-shot:"
PROBE_PREFIX = "probe:"


def load_scorer(spec: str, *, device: str | None = None, batch_size: int | None = None,
                batch_tokens: int | None = None, train_data: str | None = None) -> Scorer:
    """A scorer for ``spec``. ``device`` applies to both kinds, ``batch_size`` (prompts per pass) to the
    zero-shot judge, ``batch_tokens`` (the token budget per batch) to a trained CSRM, ``train_data`` (an
    augmentation output folder) to ``probe:category-logreg``."""
    if spec.startswith(PROBE_PREFIX):
        from eval.probes import load_probe

        return load_probe(spec, train_data=train_data)  # type: ignore[return-value]
    if spec.startswith(ZERO_SHOT_PREFIX):
        from eval.zero_shot import ZeroShotConfig, ZeroShotJudge

        options: dict[str, Any] = {"model": spec[len(ZERO_SHOT_PREFIX):] or "smollm2"}
        if device:
            options["device"] = device
        if batch_size:
            options["batch_size"] = batch_size
        return ZeroShotJudge.from_pretrained(ZeroShotConfig(**options))
    from csrm.scoring.scorer import load  # the trained CSRM (csrm/scoring/scorer.py)

    options = {k: v for k, v in (("device", device), ("max_tokens", batch_tokens)) if v}
    return load(spec, **options)


def is_config_blind(scorer: Scorer) -> bool:
    """True for a CSRM trained with blanked configs (``model.config.blind_config``): evaluate it blind."""
    config = getattr(getattr(scorer, "model", None), "config", None)
    return bool(getattr(config, "blind_config", False))
