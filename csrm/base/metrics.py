"""Classification and calibration metrics, with *violation* as the positive class throughout.

A CSRM outputs ``p_comply``; every metric here takes ``p_violation = 1 - p_comply`` and labels ``1 =
violation``, matching how CoSApien/DynaBench F1 is reported (DynaBench: FAIL is positive).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn import metrics as skm

ECE_BINS = 15


def _bin_index(probs: np.ndarray, n_bins: int) -> np.ndarray:
    """The equal-width bin of each probability, with the edges ``sklearn.calibration.calibration_curve``
    uses (``np.searchsorted`` over the inner edges), so counts, ECE and the curve agree item for item."""
    return np.searchsorted(np.linspace(0.0, 1.0, n_bins + 1)[1:-1], probs)


def reliability_curve(labels: Sequence[int], probs: Sequence[float], n_bins: int = ECE_BINS
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-bin (mean predicted probability, observed positive rate, count); empty bins are dropped. The
    first two are ``sklearn.calibration.calibration_curve`` (uniform bins); it returns no counts, so those are
    counted here over the same bins."""
    from sklearn.calibration import calibration_curve

    y, p = np.asarray(labels, dtype=float), np.clip(np.asarray(probs, dtype=float), 0.0, 1.0)
    if len(y) == 0:
        return np.array([]), np.array([]), np.array([], dtype=int)
    freq, conf = calibration_curve(y, p, n_bins=n_bins, strategy="uniform")
    count = np.bincount(_bin_index(p, n_bins), minlength=n_bins)
    return conf, freq, count[count > 0]


def expected_calibration_error(labels: Sequence[int], probs: Sequence[float], n_bins: int = ECE_BINS) -> float:
    """ECE with ``n_bins`` equal-width bins over the positive-class probability:
    Σ_b (n_b / N) · |mean(p in b) − frac(y = 1 in b)|, from :func:`reliability_curve`'s bins."""
    if len(labels) == 0:
        return float("nan")
    conf, freq, count = reliability_curve(labels, probs, n_bins)
    return float(np.sum(count / count.sum() * np.abs(conf - freq)))


def classification_metrics(labels: Sequence[int], probs: Sequence[float], threshold: float = 0.5) -> dict[str, float]:
    """F1, precision, recall, accuracy (at ``threshold`` on p_violation), AUROC, AUPRC, ECE, Brier.

    AUROC/AUPRC are NaN when only one class is present.
    """
    y = np.asarray(labels, dtype=int)
    p = np.asarray(probs, dtype=float)
    pred = (p >= threshold).astype(int)
    both = len(np.unique(y)) == 2
    return {
        "n": int(len(y)),
        "positives": int(y.sum()),
        "threshold": float(threshold),
        "f1": float(skm.f1_score(y, pred, zero_division=0)),
        "precision": float(skm.precision_score(y, pred, zero_division=0)),
        "recall": float(skm.recall_score(y, pred, zero_division=0)),
        "accuracy": float(skm.accuracy_score(y, pred)) if len(y) else float("nan"),
        "auroc": float(skm.roc_auc_score(y, p)) if both else float("nan"),
        "auprc": float(skm.average_precision_score(y, p)) if both else float("nan"),
        "ece": expected_calibration_error(y, p),
        "brier": float(skm.brier_score_loss(y, p)) if len(y) else float("nan"),
    }


def best_f1_threshold(labels: Sequence[int], probs: Sequence[float]) -> float:
    """Threshold on p_violation maximising F1 (tune on a dev split only)."""
    precision, recall, thresholds = skm.precision_recall_curve(np.asarray(labels), np.asarray(probs))
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(thresholds[int(np.argmax(f1[:-1]))]) if len(thresholds) else 0.5


def threshold_for_target(labels: Sequence[int], probs: Sequence[float], *, precision: float | None = None,
                         recall: float | None = None) -> float:
    """Lowest threshold reaching the target precision, or highest reaching the target recall, on p_violation."""
    if (precision is None) == (recall is None):
        raise ValueError("give exactly one of precision= or recall=")
    prec, rec, thresholds = skm.precision_recall_curve(np.asarray(labels), np.asarray(probs))
    prec, rec = prec[:-1], rec[:-1]
    if precision is not None:
        ok = np.nonzero(prec >= precision)[0]
        return float(thresholds[ok[0]]) if len(ok) else float(thresholds[-1]) if len(thresholds) else 0.5
    ok = np.nonzero(rec >= recall)[0]
    return float(thresholds[ok[-1]]) if len(ok) else float(thresholds[0]) if len(thresholds) else 0.5


def pair_accuracy(chosen_rewards: Sequence[float], rejected_rewards: Sequence[float]) -> float:
    """Fraction of pairs whose chosen reward is strictly higher."""
    c, r = np.asarray(chosen_rewards, dtype=float), np.asarray(rejected_rewards, dtype=float)
    return float((c > r).mean()) if len(c) else float("nan")


# temperature scaling (csrm calibrate, and eval's dev-slice calibration) searches T in this range
T_RANGE = (0.01, 100.0)


def logit_nll(logits: np.ndarray, labels: np.ndarray, temperature: float | np.ndarray) -> float:
    """Mean negative log-likelihood of ``labels`` under ``sigmoid(logits / temperature)`` (one temperature, or one per item)."""
    z = logits / temperature
    # mean BCE with logits, numerically stable: log(1 + e^z) - y z
    return float(np.mean(np.logaddexp(0.0, z) - labels * z))


def fit_temperature(logits: Any, labels: Any) -> float:
    """Temperature minimising the NLL of ``sigmoid(logits / T)`` for ``labels`` (1 = the logit's positive class).

    ``T`` is searched in [0.01, 100]; with a single class (or no data) it returns 1.0.
    """
    z = np.asarray(logits, dtype=np.float64).reshape(-1)
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    if len(z) != len(y):
        raise ValueError(f"{len(z)} logits but {len(y)} labels")
    if len(z) == 0 or len(np.unique(y)) < 2:
        return 1.0
    result = minimize_scalar(lambda log_t: logit_nll(z, y, math.exp(log_t)), method="bounded",
                             bounds=(math.log(T_RANGE[0]), math.log(T_RANGE[1])), options={"xatol": 1e-6})
    best = math.exp(float(result.x))
    return best if logit_nll(z, y, best) <= logit_nll(z, y, 1.0) else 1.0
