"""Score with a trained CSRM: ``csrm.load(path)`` -> :class:`CSRMScorer`.

Each result holds the calibrated ``p_comply = sigmoid(logit / temperature)``, the reward, and the verdict at
the config's threshold (on ``p_violation``, see :mod:`csrm.scoring.thresholds`)::

    scorer = csrm.load("runs/csrm")
    scorer.score(config, "How do I pick a lock?", "Here is how ...")       # one ScoreResult
    scorer.score([config_a, config_b], prompt, response)                  # one per config
    scorer.score_responses(config, prompt, [r1, r2, r3])                  # ranked, best first
    scorer.score_items([ScoreItem(...), ...])                             # the Scorer protocol

Speed: ``torch.inference_mode``; items are tokenized up front, sorted by length and packed into batches whose
padded size (rows x longest) stays under ``max_tokens`` (default 8192 on GPU; 2048 on CPU, where bigger
batches spill out of cache, except for shared-prefix batches); bf16 autocast on CUDA with bf16 support (on CPU only
when ``bf16=True``); on CUDA, attention avoids the cuDNN kernel, which builds a graph for every new batch shape;
``num_threads`` sets torch's (process-wide) intra-op threads. Decoder backbones reuse the key/value cache of
each shared config + conversation prefix across its responses (:mod:`csrm.model.prefix_cache`; measured 1.6x on
2 CPU threads, 1.3x for a 1B model on an H100, but slower for a tiny model on a GPU, where launches dominate:
``prefix_cache=False`` turns it off).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from csrm.base.errors import InputError
from csrm.base.records import Message, as_messages
from csrm.base.safety_config import SafetyConfig
from csrm.base.score_types import ScoreItem, ScoreResult
from csrm.base.text import cap_item, char_cap
from csrm.base.validation import (
    check_config,
    check_model_dir,
    check_score_item,
    default_taxonomy,
    taxonomy_from_dict,
)
from csrm.model.batching import DEFAULT_MAX_ROWS, DEFAULT_MAX_TOKENS, default_max_tokens, token_budget_batches
from csrm.model.cross_encoder.modeling import CSRMModel, load_tokenizer
from csrm.model.formatting import Encoded, pad_batch
from csrm.model.prefix_cache import plan_prefix_batches, run_prefix_batch, supports_prefix_cache
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
    """One response of :meth:`CSRMScorer.score_responses`, ``rank`` 0 = best."""

    rank: int
    index: int
    response: str | None
    result: ScoreResult
    error: float


def resolve_bf16(bf16: bool | None, device: torch.device) -> bool:
    """Autocast to bf16? ``None`` = only on CUDA devices that support bf16."""
    if bf16 is None:
        return device.type == "cuda" and torch.cuda.is_bf16_supported()
    return bool(bf16)


class CSRMScorer:
    """A CSRM model and tokenizer in eval mode, with batching and threshold lookup (module doc)."""

    def __init__(self, model: CSRMModel, tokenizer, *, device: str | torch.device | None = None,
                 max_tokens: int | None = None, max_rows: int = DEFAULT_MAX_ROWS, bf16: bool | None = None,
                 num_threads: int | None = None, prefix_cache: bool | None = None):
        if num_threads:
            torch.set_num_threads(num_threads)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.formatter = model.make_formatter(tokenizer)
        self.max_tokens = max_tokens or default_max_tokens(self.device.type)
        # a prefix batch's rows x width overstates its work (each prefix runs once per group), so on CPU it keeps
        # the larger default: at 2048 a group of 8 responses to a ~300-token prefix would run its prefix twice
        self.prefix_max_tokens = max_tokens or DEFAULT_MAX_TOKENS
        self.max_rows = max_rows
        self.bf16 = resolve_bf16(bf16, self.device)
        supported = supports_prefix_cache(model)
        if prefix_cache and not supported:
            raise ValueError("prefix_cache=True needs a causal full-attention decoder backbone (pooling 'last')")
        self.prefix_cache = supported if prefix_cache is None else bool(prefix_cache)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = int(pad or 0)
        self.taxonomy = taxonomy_from_dict(model.config.taxonomy)
        self.char_cap = char_cap(model.config.max_length)  # csrm.base.text: bounded work per item before tokenizing
        self._keys: dict[str, str] = {}
        self.source: str | None = None  # the folder or hub id it was loaded from (from_pretrained)

    @classmethod
    def from_pretrained(cls, path: str | Path, *, trust_remote_code: bool = False, dtype: torch.dtype | None = None,
                        **kwargs) -> CSRMScorer:
        """Load a saved CSRM (folder or hub id) and its tokenizer; ``kwargs`` go to the constructor. A local
        folder that is not a saved CSRM is an :class:`~csrm.base.errors.InputError` naming it."""
        check_model_dir(path)
        try:
            model = CSRMModel.from_pretrained(str(path), trust_remote_code=trust_remote_code, dtype=dtype)
            tokenizer = load_tokenizer(path, decoder=model.config.pooling == "last",
                                       trust_remote_code=trust_remote_code)
        except OSError as err:  # not a local folder and not on the hub (or offline): a located error, not a traceback
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise InputError(f"cannot load a CSRM from here: {first}", path=str(path)) from None
        scorer = cls(model, tokenizer, **kwargs)
        scorer.source = str(path)  # what csrm score fingerprints (csrm.base.fingerprint)
        return scorer

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
        """Threshold on p_violation for ``config`` (per-config if fitted, else the global default)."""
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
        return lookup_threshold(keys, cfg.config_thresholds, cfg.threshold)

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
        for indices, probs, rewards in self._forward(list(items)):
            yield indices, self._results(indices, probs, rewards, thresholds)

    # -- internals -----------------------------------------------------------------------------------
    def _thresholds(self, items: Sequence[ScoreItem], given: Sequence[float] | None) -> list[float]:
        if given is None:
            return [self.threshold_for(i.config) for i in items]
        if len(given) != len(items):
            raise ValueError("thresholds must have one value per item")
        return [float(t) for t in given]

    def _score(self, items: list[ScoreItem], thresholds: list[float]) -> list[ScoreResult]:
        out: list[ScoreResult | None] = [None] * len(items)
        for indices, probs, rewards in self._forward(items):
            for i, result in zip(indices, self._results(indices, probs, rewards, thresholds), strict=True):
                out[i] = result
        return out  # type: ignore[return-value]

    @staticmethod
    def _results(indices: list[int], probs: list[float], rewards: list[float],
                 thresholds: list[float]) -> list[ScoreResult]:
        return [ScoreResult(p_comply=p, reward=r, complies=(1.0 - p) < thresholds[i], threshold=thresholds[i])
                for i, p, r in zip(indices, probs, rewards, strict=True)]

    def encode(self, items: Sequence[ScoreItem]) -> list[Encoded]:
        """Token ids of ``items`` under the model's template and truncation rule. Every item is checked first
        (a lone surrogate is an :class:`~csrm.base.errors.InputError` naming ``items.<i>.<field>``) and capped to
        :attr:`char_cap` characters per field (:mod:`csrm.base.text`), so the work per item is bounded."""
        if not items:
            return []
        for index, item in enumerate(items):
            check_score_item(item, index)
        items = [cap_item(item, self.char_cap) for item in items]
        return self.formatter.encode_batch([i.config for i in items], [i.messages for i in items],
                                           [i.response for i in items])

    def _context(self) -> contextlib.ExitStack:
        """inference mode, bf16 autocast when enabled, and on CUDA attention kernels that need no per-shape
        set-up (cuDNN attention builds a graph for every new batch shape, which dynamic batches keep making)."""
        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode())
        if self.bf16:
            stack.enter_context(torch.autocast(device_type=self.device.type, dtype=torch.bfloat16))
        if self.device.type == "cuda":
            from torch.nn.attention import SDPBackend, sdpa_kernel

            stack.enter_context(sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                                             SDPBackend.MATH]))
        return stack

    def _forward(self, items: list[ScoreItem]) -> Iterator[tuple[list[int], list[float], list[float]]]:
        """Yield ``(item indices, p_comply, rewards)`` per forward batch."""
        encoded = self.encode(items)
        plain = list(range(len(encoded)))
        prefix_batches = []
        if self.prefix_cache:
            prefix_batches, plain = plan_prefix_batches(encoded, self.prefix_max_tokens, self.max_rows)
        lengths = [len(encoded[i].input_ids) for i in plain]
        plain_batches = [[plain[j] for j in b] for b in token_budget_batches(lengths, self.max_tokens, self.max_rows)]
        extra = {"use_cache": False} if self.model.config.pooling == "last" else {}
        calibrate = self.model.calibrated_probability
        for batch in prefix_batches:  # the context is entered per batch: no state leaks into the caller's code
            with self._context():
                logits, rewards = run_prefix_batch(self.model, batch, self.pad_id, self.device)
                probs, values = calibrate(logits.float()).tolist(), rewards.float().tolist()
            yield batch.items, probs, values
        for indices in plain_batches:
            with self._context():
                inputs = pad_batch([encoded[i].input_ids for i in indices], self.pad_id)
                out = self.model(**{k: v.to(self.device) for k, v in inputs.items()}, **extra)
                probs, values = calibrate(out.compliance_logits.float()).tolist(), out.rewards.float().tolist()
            yield indices, probs, values


def load(path_or_hub_id: str | Path, **kwargs) -> CSRMScorer:
    """Load a trained CSRM for scoring (``csrm.load``); ``kwargs`` as for :class:`CSRMScorer`.

    The architecture is read from the folder's ``config.json``: a clause-reading CSRM
    (``model_type: csrm_clause``) gets a :class:`csrm.model.clause.predictor.ClauseScorer`, a cross-encoder CSRM a
    :class:`CSRMScorer`; both have the same scoring API."""
    from transformers import AutoConfig

    import csrm.model.clause.modeling  # noqa: F401  (registers model_type csrm_clause)

    config = AutoConfig.from_pretrained(str(path_or_hub_id), trust_remote_code=kwargs.get("trust_remote_code", False))
    if config.model_type == "csrm_clause":
        from csrm.model.clause.predictor import ClauseScorer

        return ClauseScorer.from_pretrained(path_or_hub_id, **kwargs)
    return CSRMScorer.from_pretrained(path_or_hub_id, **kwargs)
