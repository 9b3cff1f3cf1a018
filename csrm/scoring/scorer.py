"""Score with a trained CSRM: ``csrm.load(path)`` -> :class:`Scorer`.

Each result holds the calibrated ``p_comply = sigmoid(logit / temperature)``, the reward, and the verdict at
the config's threshold (on ``p_violation``, see :mod:`csrm.scoring.thresholds`)::

    scorer = csrm.load("runs/csrm")
    scorer.score(config, "How do I pick a lock?", "Here is how ...")       # one ScoreResult
    scorer.score([config_a, config_b], prompt, response)                  # one per config
    scorer.score_responses(config, prompt, [r1, r2, r3])                  # ranked, best first
    scorer.score_items([ScoreItem(...), ...])                             # the Scorer protocol

One class for every model family: the forward pass is the family's predictor
(``csrm/model/<family>/predictor.py``), chosen through :mod:`csrm.model.registry` from the saved model's
``model_type`` (or the model object's), so scoring never imports a family module it does not use and no family
subclasses this one. Configs, thresholds, ranking and the public calls live here, once. Options a family does
not support are an :class:`~csrm.base.errors.InputError` naming the option (the predictor refuses them).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from csrm.base.records import Message, as_messages
from csrm.base.safety_config import SafetyConfig
from csrm.base.score_types import ScoreItem, ScoreResult
from csrm.base.validation import check_config, check_model_dir, default_taxonomy, taxonomy_from_dict
from csrm.model.registry import family_of_model_type, saved_family
from csrm.scoring.ranking import estimated_error, rank
from csrm.scoring.thresholds import (
    ThresholdFit,
    config_key,
    fit_thresholds,
    lookup_keys,
    lookup_threshold,
    save_thresholds,
)

ConfigLike = str | SafetyConfig
PromptLike = str | list[Message]


@dataclass
class RankedResponse:
    """One response of :meth:`Scorer.score_responses`, ``rank`` 0 = best."""

    rank: int
    index: int
    response: str | None
    result: ScoreResult
    error: float


def resolve_bf16(bf16: bool | None, device) -> bool:
    """Autocast to bf16? ``None`` = only on CUDA devices that support bf16 (the cross-encoder's rule)."""
    from csrm.model.cross_encoder.predictor import resolve_bf16 as resolve

    return resolve(bf16, device)


class Scorer:
    """A family's predictor (its model and tokenizer in eval mode) with configs, thresholds and ranking (module
    doc). ``Scorer(model, tokenizer, **options)`` picks the predictor from ``model.config.model_type``;
    ``options`` (``device``, ``max_tokens``, ``max_rows``, ``num_threads``, ``bf16``, ``prefix_cache``) go to it."""

    def __init__(self, model: Any = None, tokenizer: Any = None, *, predictor: Any = None, **options):
        if predictor is None:
            family = family_of_model_type(getattr(model.config, "model_type", ""))
            predictor = family.load("predictor")(model, tokenizer, **options)
        elif model is not None or options:
            raise TypeError("give either (model, tokenizer, **options) or predictor=")
        self.predictor = predictor
        self.taxonomy = taxonomy_from_dict(predictor.model.config.taxonomy)
        self._keys: dict[str, str] = {}
        self.source: str | None = None  # the folder or hub id it was loaded from (from_pretrained)

    @classmethod
    def from_pretrained(cls, path: str | Path, *, trust_remote_code: bool = False, dtype: Any = None,
                        **options) -> Scorer:
        """Load a saved CSRM (folder or hub id) of any family; ``options`` go to the family's predictor. A
        local folder that is not a saved CSRM is an :class:`~csrm.base.errors.InputError` naming it."""
        check_model_dir(path)
        family = saved_family(path, trust_remote_code=trust_remote_code)
        predictor = family.load("predictor").from_pretrained(path, trust_remote_code=trust_remote_code,
                                                             dtype=dtype, **options)
        scorer = cls(predictor=predictor)
        scorer.source = str(path)  # what csrm score fingerprints (csrm.base.fingerprint)
        return scorer

    # the predictor's model, tokenizer and settings, read through (one place holds each)
    model = property(lambda self: self.predictor.model)
    tokenizer = property(lambda self: self.predictor.tokenizer)
    device = property(lambda self: self.predictor.device)
    max_tokens = property(lambda self: self.predictor.max_tokens)
    bf16 = property(lambda self: self.predictor.bf16)
    prefix_cache = property(lambda self: self.predictor.prefix_cache)

    # -- configs and thresholds ----------------------------------------------------------------------
    def render(self, config: ConfigLike) -> str:
        """The config text the model reads; a structured config is checked against the model's taxonomy
        (:func:`csrm.base.validation.check_config`: known categories, never-allowed ones refused)."""
        if isinstance(config, SafetyConfig):
            return check_config(config, self.taxonomy or default_taxonomy()).render(self.taxonomy)
        if not isinstance(config, str) or not config.strip():
            raise ValueError("config must be a non-empty string or a SafetyConfig")
        return config

    def threshold_for(self, config: ConfigLike) -> float:
        """Threshold on p_violation for ``config`` (per-config if fitted, else the default: the model's global one,
        or, for a predictor that picks its default by the config (``default_threshold``, the policy judge: the cut
        of the reader that reads it), that one)."""
        cfg = self.model.config
        if isinstance(config, str):
            key = self._keys.get(config)
            if key is None:
                if len(self._keys) > 4096:
                    self._keys.clear()
                key = self._keys[config] = config_key(config)
            keys = [key]
        else:
            keys = lookup_keys(config, self.render(config))
        if cfg.config_thresholds and any(k in cfg.config_thresholds for k in keys):
            return lookup_threshold(keys, cfg.config_thresholds, cfg.threshold)
        by_config = getattr(self.predictor, "default_threshold", None)
        if by_config is None:
            return float(cfg.threshold)
        return float(by_config(config if isinstance(config, str) else self.render(config)))

    def fit_thresholds(self, items: Sequence[ScoreItem], labels: Sequence[int], *, precision: float | None = None,
                       recall: float | None = None, min_examples: int = 20,
                       save_to: str | Path | None = None) -> ThresholdFit:
        """Fit global and per-config thresholds (labels: 1 = complies) to a target violation precision or
        recall; store them in the model config and, with ``save_to``, in that model folder's config.json."""
        probs = [r.p_comply for r in self.score_items(items)]
        fit = fit_thresholds([config_key(i.config) for i in items], labels, probs, precision=precision,
                             recall=recall, min_examples=min_examples)
        cfg = self.model.config
        cfg.threshold = fit.default
        cfg.config_thresholds = {**(cfg.config_thresholds or {}), **fit.per_config}
        if save_to is not None:
            save_thresholds(save_to, default=fit.default, per_config=fit.per_config)
        return fit

    # -- public scoring calls ------------------------------------------------------------------------
    def score(self, config: ConfigLike | Sequence[ConfigLike], prompt_or_messages: PromptLike,
              response: str | None = None) -> ScoreResult | list[ScoreResult]:
        """Score one response (``None`` = screen the request); a list of configs gives one result each."""
        if isinstance(config, (list, tuple)):
            return self.score_configs(config, prompt_or_messages, response)
        return self.score_batch([config], [prompt_or_messages], [response])[0]

    def score_configs(self, configs: Sequence[ConfigLike], prompt_or_messages: PromptLike,
                      response: str | None = None) -> list[ScoreResult]:
        """One item under several configs, in one batched call."""
        return self.score_batch(list(configs), [prompt_or_messages] * len(configs), [response] * len(configs))

    def score_batch(self, configs: Sequence[ConfigLike], prompts: Sequence[PromptLike],
                    responses: Sequence[str | None] | None = None) -> list[ScoreResult]:
        """Parallel lists of configs, prompts (or conversations) and responses."""
        responses = [None] * len(configs) if responses is None else list(responses)
        if not len(configs) == len(prompts) == len(responses):
            raise ValueError("configs, prompts and responses must have the same length")
        items = [ScoreItem(self.render(c), as_messages(p), r) for c, p, r in zip(configs, prompts, responses, strict=True)]
        return self._score(items, [self.threshold_for(c) for c in configs])

    def score_responses(self, config: ConfigLike, prompt_or_messages: PromptLike,
                        responses: Sequence[str | None]) -> list[RankedResponse]:
        """Score several responses to one prompt and rank them best first (:mod:`csrm.scoring.ranking`)."""
        results = self.score_batch([config] * len(responses), [prompt_or_messages] * len(responses), responses)
        return [RankedResponse(position, i, responses[i], results[i], estimated_error(results[i]))
                for position, i in enumerate(rank(results))]

    def score_items(self, items: Sequence[ScoreItem], thresholds: Sequence[float] | None = None
                    ) -> list[ScoreResult]:
        """The :class:`csrm.base.score_types.Scorer` protocol: results in input order.

        ``thresholds`` (optional, one per item) overrides the lookup by config text.
        """
        return self._score(list(items), self._thresholds(items, thresholds))

    def iter_batches(self, items: Sequence[ScoreItem], thresholds: Sequence[float] | None = None
                     ) -> Iterator[tuple[list[int], list[ScoreResult]]]:
        """Score lazily, yielding ``(item indices, results)`` per forward batch (for streaming writers)."""
        thresholds = self._thresholds(items, thresholds)
        for indices, probs, rewards, *extra in self._forward(list(items)):
            yield indices, self._results(indices, probs, rewards, thresholds, *extra)

    # -- internals -----------------------------------------------------------------------------------
    def _thresholds(self, items: Sequence[ScoreItem], given: Sequence[float] | None) -> list[float]:
        if given is None:
            return [self.threshold_for(i.config) for i in items]
        if len(given) != len(items):
            raise ValueError("thresholds must have one value per item")
        return [float(t) for t in given]

    def _score(self, items: list[ScoreItem], thresholds: list[float]) -> list[ScoreResult]:
        out: list[ScoreResult | None] = [None] * len(items)
        for indices, probs, rewards, *extra in self._forward(items):
            for i, result in zip(indices, self._results(indices, probs, rewards, thresholds, *extra), strict=True):
                out[i] = result
        return out  # type: ignore[return-value]

    @staticmethod
    def _results(indices: list[int], probs: list[float], rewards: list[float], thresholds: list[float],
                 fields: list[dict[str, Any]] | None = None) -> list[ScoreResult]:
        """One result per item; ``fields`` (optional, one mapping per item) are further ``ScoreResult`` fields a
        family's predictor yields as a fourth element (e.g. which rule and turn drove the verdict)."""
        fields = fields or [{}] * len(indices)
        return [ScoreResult(p_comply=p, reward=r, complies=(1.0 - p) < thresholds[i], threshold=thresholds[i], **f)
                for i, p, r, f in zip(indices, probs, rewards, fields, strict=True)]

    def clear_cache(self) -> None:
        """Forget what the predictor caches between calls (the clause family's text features), so what follows
        is scored as by a freshly loaded scorer; a no-op for families that cache nothing."""
        clear = getattr(self.predictor, "clear_cache", None)
        if clear is not None:
            clear()

    def raw_outputs(self, items: Sequence[ScoreItem]) -> tuple[np.ndarray, np.ndarray]:
        """(compliance logits before temperature, rewards) for ``items``, in input order (calibration)."""
        return self.predictor.raw_outputs(list(items))

    def _forward(self, items: list[ScoreItem]) -> Iterator[tuple]:
        """Yield ``(item indices, p_comply, rewards[, further ScoreResult fields per item])`` per forward batch of
        the predictor."""
        return self.predictor.forward(items)


def load(path_or_hub_id: str | Path, **kwargs) -> Scorer:
    """Load a trained CSRM for scoring (``csrm.load``): :meth:`Scorer.from_pretrained`. The family is read from
    the folder's ``config.json`` (:func:`csrm.model.registry.saved_family`); ``kwargs`` as for :class:`Scorer`."""
    return Scorer.from_pretrained(path_or_hub_id, **kwargs)
