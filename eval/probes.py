"""Two simple frozen-embedding probes, evaluated beside every CSRM as floor baselines.

Both read the config's *structured* allow set (the categories the benchmark item's config allows), not its
text, so they run only on benchmarks whose items carry one (CoSAlign-Test, the augmented split) and are
reported as skipped elsewhere. Both use the frozen all-MiniLM-L6-v2 (mean-pooled, normalised), the same
content windows as the clause-reading CSRM, and the model taxonomy's "name: definition" texts.

- ``probe:clause-similarity`` (zero-shot, no training): violation score = the highest cosine similarity of
  the content to a category the config does not allow ("Other Harms" left out) minus the highest to one it
  allows (or minus 0.3 when it allows none); P(violation) = sigmoid(10 * score). It reads each category's
  words, so it transfers to categories without labels.
- ``probe:category-logreg``: one logistic regression per taxonomy category on the content embeddings of the
  run's training split (the content's labelled categories), combined by the compliance rule:
  P(violation) = 1 - prod over categories the config does not allow of (1 - p_c). A category with no positive
  training label cannot be judged (p_c = 0): the failure mode of heads with one slot per category.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from transformers import AutoTokenizer

from csrm.base.paths import resolve_model_name
from csrm.base.score_types import ScoreResult
from csrm.model.clause.features import FeatureEncoder, content_windows
from csrm.model.clause.modeling import ClauseCSRMModel
from eval.items import EvalItem

PROBES = ("clause-similarity", "category-logreg")
PREFIX = "probe:"
NO_ALLOWED_MARGIN = 0.3


def allowed_set(item: EvalItem) -> set[str] | None:
    """The categories the item's config allows (at any severity), or None when the item has no structure."""
    allowed = item.extra.get("allowed")
    if allowed is None:
        return None
    if isinstance(allowed, dict):
        return {c for c, level in allowed.items() if level}
    return set(allowed)


class Probe:
    """A frozen-embedding probe (module doc); ``score_eval_items`` replaces the Scorer protocol's call."""

    def __init__(self, kind: str, train_data: str | Path | None = None):
        if kind not in PROBES:
            raise ValueError(f"unknown probe {kind!r}; known: {', '.join(PROBES)}, surface")
        self.kind = kind
        tokenizer = AutoTokenizer.from_pretrained(resolve_model_name("minilm"))
        self.model = ClauseCSRMModel.from_backbone("minilm", tokenizer=tokenizer).eval()
        self.features = FeatureEncoder(self.model, tokenizer)
        self.names = self.model.taxonomy.names
        self.anchors = self.model.anchors.numpy()
        self.heads: dict[str, LogisticRegression] = {}
        if kind == "category-logreg":
            if train_data is None:
                raise ValueError("probe:category-logreg needs the training data folder")
            self._fit(Path(train_data))

    def unsupported(self, items: Sequence[EvalItem]) -> str | None:
        """Why this probe cannot score ``items`` (None when it can)."""
        if any(allowed_set(it) is None for it in items):
            return "the probes read a structured allow set, which this benchmark's configs do not have"
        return None

    def _embed(self, messages_and_responses) -> np.ndarray:
        """Per item, the window embeddings [S, D] (as a list of arrays)."""
        windows = [content_windows(m, r, self.model.config.max_segment_chars) for m, r in messages_and_responses]
        feats = self.features.content_features(windows)
        return [feats.x[i, feats.mask[i]].numpy() for i in range(len(windows))]

    def _fit(self, data: Path) -> None:
        rows = [json.loads(line) for line in (data / "examples.train.jsonl").read_text(encoding="utf-8").splitlines()
                if line.strip()]
        unique = {json.dumps([r["messages"], r["response"]], sort_keys=True): r for r in rows}
        rows = list(unique.values())
        x = np.stack([e.mean(0) for e in self._embed([(r["messages"], r["response"]) for r in rows])])
        for name in self.names:
            y = np.array([int(name in r["categories"] and r["severity"] > 0) for r in rows])
            if 0 < y.sum() < len(y):
                self.heads[name] = LogisticRegression(max_iter=1000, C=1.0).fit(x, y)

    def score_eval_items(self, items: Sequence[EvalItem]) -> list[ScoreResult]:
        embeds = self._embed([(it.item.messages, it.item.response) for it in items])
        out = []
        for it, e in zip(items, embeds, strict=True):
            allowed = allowed_set(it) or set()
            if self.kind == "clause-similarity":
                sims = (e @ self.anchors.T).max(0)  # best window per category
                denied = [s for n, s in zip(self.names, sims, strict=True) if n not in allowed and n != "Other Harms"]
                allow = [s for n, s in zip(self.names, sims, strict=True) if n in allowed]
                score = max(denied, default=0.0) - max(allow, default=NO_ALLOWED_MARGIN)
                p_violation = float(1 / (1 + np.exp(-10 * score)))
            else:
                x = e.mean(0, keepdims=True)
                keep = 1.0
                for name, head in self.heads.items():
                    if name not in allowed:
                        keep *= 1 - float(head.predict_proba(x)[0, 1])
                p_violation = 1 - keep
            out.append(ScoreResult(p_comply=1 - p_violation, reward=-p_violation, complies=p_violation < 0.5,
                                   threshold=0.5))
        return out

    def score_items(self, items):  # the Scorer protocol: probes need the benchmark's structure
        raise TypeError("a probe scores EvalItems (score_eval_items): it reads the config's structured allow set")


def load_probe(spec: str, train_data: str | Path | None = None):
    """``probe:<kind>`` -> :class:`Probe`, or for ``probe:surface`` the lengths-only baseline
    (:class:`eval.surface.SurfaceProbe`)."""
    from eval.surface import NAME, SurfaceProbe

    kind = spec[len(PREFIX):]
    return SurfaceProbe() if kind == NAME else Probe(kind, train_data=train_data)
