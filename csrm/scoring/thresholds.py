"""Decision thresholds: a global default and per-config overrides, fitted on labelled data, saved with the model.

**Convention.** Violation is the positive class (as in :mod:`csrm.base.metrics`), so every threshold ``t`` applies to
``p_violation = 1 - p_comply``: an item *violates* iff ``p_violation >= t`` and *complies* iff
``p_violation < t``. The default ``t = 0.5`` means "complies iff p_comply > 0.5". Labels given to the fitting
functions follow :class:`csrm.base.records.Example` (``1 = complies``, ``0 = violates``) and are flipped inside.

Per-config thresholds live in ``config.config_thresholds`` keyed by :func:`config_key` (the id of the config's
rendered text, ``SafetyConfig(text=...).id``) or by a config's ``name``; lookup order is name, the config's own
``id``, then the text key, then the global ``config.threshold``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from csrm.base.io import read_text, write_json
from csrm.base.safety_config import SafetyConfig

DEFAULT_MIN_EXAMPLES = 20


def config_key(config: str | SafetyConfig) -> str:
    """The id under which a config's threshold is stored: ``SafetyConfig(text=rendered text).id``; the empty
    config of a config-blind model has the key ``""`` (it only ever uses the global threshold)."""
    text = config if isinstance(config, str) else config.render()
    return SafetyConfig(text=text).id if text.strip() else ""


def lookup_keys(config: str | SafetyConfig, rendered: str | None = None) -> list[str]:
    """Keys to try for ``config``, most specific first."""
    if isinstance(config, str):
        return [config_key(config)]
    text = rendered if rendered is not None else config.render()
    return [k for k in (config.name, config.id, config_key(text)) if k]


def lookup_threshold(keys: Sequence[str], table: Mapping[str, float] | None, default: float) -> float:
    """The first of ``keys`` found in ``table``, else ``default``."""
    for key in keys:
        if table and key in table:
            return float(table[key])
    return float(default)


@dataclass
class ThresholdFit:
    """A fitted global threshold and per-config thresholds (all on p_violation), with the examples used."""

    default: float
    per_config: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


def fit_threshold(labels: Sequence[int], p_comply: Sequence[float], *, precision: float | None = None,
                  recall: float | None = None) -> float:
    """Threshold on p_violation reaching the target violation precision (lowest such) or recall (highest).

    ``labels``: 1 = complies, 0 = violates.
    """
    from csrm.base.metrics import threshold_for_target  # sklearn: imported only when fitting

    violation = 1 - np.asarray(labels, dtype=int)
    return threshold_for_target(violation, 1.0 - np.asarray(p_comply, dtype=float), precision=precision,
                                recall=recall)


def fit_thresholds(keys: Sequence[str], labels: Sequence[int], p_comply: Sequence[float], *,
                   precision: float | None = None, recall: float | None = None,
                   min_examples: int = DEFAULT_MIN_EXAMPLES) -> ThresholdFit:
    """Global threshold on all data plus one per config key that has ``min_examples`` and both classes."""
    if not len(keys) == len(labels) == len(p_comply):
        raise ValueError("keys, labels and p_comply must have the same length")
    fit = ThresholdFit(default=fit_threshold(labels, p_comply, precision=precision, recall=recall))
    by_key: dict[str, list[int]] = defaultdict(list)
    for i, key in enumerate(keys):
        by_key[key].append(i)
    for key, rows in sorted(by_key.items()):
        y = [labels[i] for i in rows]
        if len(rows) < min_examples or len(set(y)) < 2:
            continue
        fit.per_config[key] = fit_threshold(y, [p_comply[i] for i in rows], precision=precision, recall=recall)
        fit.counts[key] = len(rows)
    return fit


def save_thresholds(model_dir: str | Path, *, default: float | None = None,
                    per_config: Mapping[str, float] | None = None, replace: bool = False) -> dict:
    """Write thresholds into ``model_dir/config.json`` (atomic rewrite); returns the new config dict.

    ``per_config`` is merged into the stored table unless ``replace``.
    """
    path = Path(model_dir) / "config.json"
    config = json.loads(read_text(path))
    if default is not None:
        config["threshold"] = float(default)
    if per_config is not None:
        table = {} if replace else dict(config.get("config_thresholds") or {})
        table.update({str(k): float(v) for k, v in per_config.items()})
        config["config_thresholds"] = table
    write_json(path, config)
    return config
