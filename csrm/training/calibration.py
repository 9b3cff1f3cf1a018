"""``csrm calibrate MODEL --dataset-path DATASET_DIR``: post-hoc temperature scaling of the compliance head.

One scalar ``T > 0`` is fitted on a held-out split by minimising the negative log-likelihood of
``sigmoid(logit / T)`` (bounded Brent search over ``log T``), then stored as ``temperature`` in the model's
``config.json`` (rewritten atomically), which every scorer applies. A clause-reading CSRM gets one temperature
per task when the split holds at least ``MIN_PER_TASK`` requests and responses: ``request_temperature`` for
request screening (no response) and ``temperature`` for responses, since the two are confident differently.
Temperature scaling keeps the ranking (AUROC, F1 at a re-tuned threshold) and fixes over/under-confidence. ECE (15 bins) and Brier, with violation as the
positive class, are reported before and after, with a reliability diagram.

**Which rows.** ``example_ids`` restricts the fit to those rows of the split: ``csrm run`` passes the dev slice
``csrm eval``'s augmented benchmark draws from the same split (:func:`csrm.app.calibrate.eval_dev_ids`), so the temperature never
sees an item the test numbers are reported on; the report names the rows (``fit_on``, ``example_ids``).
**Not applied when it hurts.** The temperature minimises NLL, not ECE; on a small split a fitted temperature can
raise the ECE it is meant to lower (the default recipe's went 0.081 -> 0.086). Such a fit is kept out of
``config.json`` (``applied: false`` and the reason in the report) unless ``keep_if_worse``.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import torch

from csrm.base.errors import InputError
from csrm.base.io import check_output_dir, real_path, record_output, write_json
from csrm.base.metrics import (
    ECE_BINS,
    expected_calibration_error,
    fit_temperature,
    logit_nll,
    reliability_curve,
)
from csrm.base.validation import check_model_dir
from csrm.model.batching import DEFAULT_MAX_ROWS, default_max_tokens, token_budget_batches
from csrm.model.clause.modeling import item_temperatures
from csrm.model.data import MixedCollator, load_augmented, tokenize_examples

CLAUSE_CHUNK = 64  # items per clause-model call in calibrate (one tqdm step)
MIN_PER_TASK = 50  # fewer requests or responses than this: one joint temperature (a fit on a handful is noise)


def fit_task_temperatures(logits: Any, labels: Any, is_request: Any) -> tuple[float, float | None]:
    """``(temperature, request_temperature)``: one temperature for responses and one for requests when each
    kind has at least :data:`MIN_PER_TASK` items with both labels, else one joint temperature and ``None``."""
    z, y = np.asarray(logits, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    request = np.asarray(is_request, dtype=bool)

    def enough(mask: np.ndarray) -> bool:
        return int(mask.sum()) >= MIN_PER_TASK and len(np.unique(y[mask])) == 2

    if enough(request) and enough(~request):
        return fit_temperature(z[~request], y[~request]), fit_temperature(z[request], y[request])
    return fit_temperature(z, y), None


def calibration_metrics(logits: np.ndarray, labels_comply: np.ndarray, temperature: float | np.ndarray
                        ) -> dict[str, float]:
    """NLL, ECE (15 bins) and Brier with violation as the positive class, at ``temperature`` (a scalar, or one
    per item)."""
    p_violation = 1.0 / (1.0 + np.exp(logits / temperature))
    y_violation = 1 - labels_comply
    return {"nll": logit_nll(logits, labels_comply, temperature),
            "ece": expected_calibration_error(y_violation, p_violation, n_bins=ECE_BINS),
            "brier": float(np.mean((p_violation - y_violation) ** 2))}


@torch.no_grad()
def compliance_logits(model: Any, input_ids: list[list[int]], *, batch_tokens: int | None = None,
                      pad_token_id: int = 0, padding_side: str = "right", progress: bool = False) -> np.ndarray:
    """Raw compliance logits (before temperature) for tokenized inputs, in input order, in batches of at most
    ``batch_tokens`` padded tokens (default: :func:`csrm.model.batching.default_max_tokens`), as the scorer
    batches."""
    from tqdm.auto import tqdm

    model.eval()
    device = next(model.parameters()).device
    collator = MixedCollator(pad_token_id, padding_side)
    budget = batch_tokens or default_max_tokens(device.type)
    batches = token_budget_batches([len(ids) for ids in input_ids], budget, DEFAULT_MAX_ROWS)
    out = np.zeros(len(input_ids), dtype=np.float64)
    for idx in tqdm(batches, desc="calibration logits", unit="batch", disable=not progress, leave=False):
        batch = collator.examples([input_ids[i] for i in idx])
        logits = model(input_ids=batch["input_ids"].to(device),
                       attention_mask=batch["attention_mask"].to(device)).compliance_logits
        out[idx] = logits.float().cpu().numpy()
    return out


def calibrate(model_dir: str | Path, dataset_dir: str | Path, *, split: str = "validation",
              batch_tokens: int | None = None,
              max_examples: int | None = None, output_dir: str | Path | None = None, write: bool = True,
              device: str | None = None, progress: bool = True, report_to: str | list[str] | None = None,
              example_ids: Collection[str] | None = None, fit_on: str | None = None, keep_if_worse: bool = False,
              overwrite: bool = False) -> dict[str, Any]:
    """Fit the temperature on ``split`` of an augmentation folder and store it in ``model_dir/config.json``.

    Writes ``report.json`` and ``reliability.png`` (with per-bin counts) to ``output_dir`` (default
    ``model_dir/calibration``) and returns the report: ``temperature``, ``before``/``after`` metrics, ``n``,
    ``positives`` (violations) and ``bins`` (the after-calibration reliability table: mean predicted
    P(violation), observed rate and item count per non-empty bin). ``report_to`` including ``wandb`` also logs
    the metrics, the bin table and the diagram (:mod:`csrm.base.tracking`). ``example_ids``: fit on those rows
    of ``split`` only, described in the report as ``fit_on``; a fit that raises the ECE is not written unless
    ``keep_if_worse`` (module doc).
    """
    from csrm.model.cross_encoder.modeling import CSRMModel, load_tokenizer

    model_dir = Path(model_dir)
    check_model_dir(model_dir)  # a missing folder, or one holding another kind of model, is named here
    if not model_dir.is_dir():
        raise InputError("model folder not found", path=str(model_dir))
    out = Path(output_dir) if output_dir is not None else model_dir / "calibration"
    if real_path(out) == real_path(model_dir):  # MODEL/calibration (the default) is fine, MODEL itself is not
        raise InputError("is the model folder: calibrate writes report.json beside it, not into it",
                         path=str(out), field="output_dir")
    check_output_dir(out, "calibrate", overwrite=overwrite, inputs={"dataset_path": dataset_dir},
                     legacy=("report.json", "reliability.png"))
    examples = load_augmented(dataset_dir, [split])["examples"][split]
    if example_ids is not None:
        wanted = set(example_ids)
        examples = examples.select([i for i, e in enumerate(examples["example_id"]) if e in wanted])
        if len(examples) < len(wanted):
            raise InputError(f"{len(wanted) - len(examples)} of the example_ids are not in split {split!r}",
                             path=str(dataset_dir))
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model_type = json.loads((model_dir / "config.json").read_text(encoding="utf-8")).get("model_type")
    if model_type in ("csrm_rule", "csrm_policy"):
        raise InputError("this model is calibrated when it is trained (the rule judge on its rule data's dev split; "
                         "a policy judge through its readers): csrm calibrate fits the clause and cross-encoder "
                         "families", path=str(model_dir))
    clause = model_type == "csrm_clause"
    if clause:
        logits, labels, is_request, (old_t, old_req) = _clause_logits(model_dir, examples, max_examples, device,
                                                                       batch_tokens, progress)
        new_t, new_req = fit_task_temperatures(logits, labels, is_request)
        old_temps = item_temperatures(old_t, old_req, is_request).numpy()
        new_temps = item_temperatures(new_t, new_req, is_request).numpy()
    else:
        model = CSRMModel.from_pretrained(model_dir).to(device)
        tokenizer = load_tokenizer(model_dir, decoder=model.config.is_decoder_backbone)
        blind = bool(getattr(model.config, "blind_config", False))
        feats = tokenize_examples(examples, model.make_formatter(tokenizer), blind_config=blind,
                                  limit=max_examples)
        if not len(feats):
            raise InputError(f"split {split!r} has no examples", path=str(dataset_dir))
        logits = compliance_logits(model, feats.input_ids, batch_tokens=batch_tokens,
                                   pad_token_id=tokenizer.pad_token_id or 0, padding_side=tokenizer.padding_side,
                                   progress=progress)
        labels = np.asarray(feats.labels, dtype=np.float64)
        old_t, old_req, new_req = float(model.config.temperature), None, None
        new_t = fit_temperature(logits, labels)
        old_temps, new_temps = old_t, new_t
    report = {"model_dir": str(model_dir), "dataset": str(dataset_dir), "split": split, "n": int(len(labels)),
              "positives": int((1 - labels).sum()), "temperature": new_t,
              "before": {"temperature": old_t, **calibration_metrics(logits, labels, old_temps)},
              "after": {"temperature": new_t, **calibration_metrics(logits, labels, new_temps)},
              "fit_on": fit_on or f"every row of split {split!r}"}
    if example_ids is not None:
        report["example_ids"] = sorted(examples["example_id"][:report["n"]])
    worse = report["after"]["ece"] > report["before"]["ece"]
    applied = report["applied"] = not worse or keep_if_worse
    if worse:
        report["not_applied_reason" if not keep_if_worse else "note"] = (
            f"the fitted temperature raises ECE on the fit rows ({report['before']['ece']:.4f} -> "
            f"{report['after']['ece']:.4f})" + ("; the model keeps its temperature" if not keep_if_worse else
                                                 "; applied anyway (keep_if_worse)"))
    report["written"] = bool(write) and applied
    if clause:
        report.update(request_temperature=new_req, requests=int(np.sum(is_request)))
        report["before"]["request_temperature"], report["after"]["request_temperature"] = old_req, new_req
    if not applied:  # "after" stays the fitted temperature's numbers; the temperature in effect is the old one
        report["fitted_temperature"], report["temperature"] = new_t, old_t
        if clause:
            report["fitted_request_temperature"], report["request_temperature"] = new_req, old_req
    from csrm.base.plots import plot_reliability

    y_violation = 1 - labels
    plot_reliability(out / "reliability.png", {
        f"before (T={_label(old_t, old_req)})": (y_violation, 1.0 / (1.0 + np.exp(logits / old_temps))),
        f"{'after' if applied else 'fitted, not applied'} (T={_label(new_t, new_req)})":
            (y_violation, 1.0 / (1.0 + np.exp(logits / new_temps)))},
        title=f"Compliance head, {split} split (positive = violation)")
    report["plot"] = str(out / "reliability.png")
    in_effect = new_temps if applied else old_temps  # the bins of the temperature the model now has
    conf, freq, count = reliability_curve(y_violation, 1.0 / (1.0 + np.exp(logits / in_effect)))
    report["bins"] = [{"p_violation": float(c), "violation_rate": float(f), "count": int(n)}
                      for c, f, n in zip(conf, freq, count, strict=True)]
    from csrm.base.tracking import log_results

    wandb_dir = log_results(report_to, job_type="calibration", name=f"calibrate {model_dir.name}",
                            metrics={k: report[k] for k in ("temperature", "before", "after", "n", "positives")},
                            images={"reliability": out / "reliability.png"},
                            tables={"bins": (["p_violation", "violation_rate", "count"],
                                             [list(b.values()) for b in report["bins"]])},
                            config={"model_dir": str(model_dir), "dataset": str(dataset_dir), "split": split})
    if wandb_dir is not None:
        report["wandb_run_dir"] = wandb_dir
    write_json(out / "report.json", report)
    record_output(out, "calibrate", ["report.json", "reliability.png"])
    if report["written"]:
        set_temperature(model_dir, new_t, new_req)
    return report


def _label(temperature: float, request_temperature: float | None) -> str:
    return f"{temperature:.2f}" if request_temperature is None else \
        f"{temperature:.2f}, requests {request_temperature:.2f}"


def _clause_logits(model_dir: Path, examples, max_examples: int | None, device: str, batch_tokens: int | None = None,
                   progress: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[float, float | None]]:
    """(raw logits, labels, is-request mask, current (temperature, request_temperature)) of a clause-reading
    CSRM on example rows."""
    from csrm.base.score_types import ScoreItem
    from csrm.model.clause.predictor import ClausePredictor

    scorer = ClausePredictor.from_pretrained(model_dir, device=device, max_tokens=batch_tokens)
    rows = examples.select(range(min(max_examples, len(examples)))) if max_examples else examples
    if not len(rows):
        raise InputError("the split has no examples", path=str(model_dir))
    from tqdm.auto import tqdm

    items = [ScoreItem(r["config_text"], r["messages"], r["response"]) for r in rows]
    logits = np.zeros(len(items))
    with tqdm(total=len(items), desc="calibration logits", unit="item", disable=not progress, leave=False) as bar:
        for start in range(0, len(items), CLAUSE_CHUNK):  # chunks, so the bar moves; same numbers as one call
            logits[start:start + CLAUSE_CHUNK] = scorer.raw_outputs(items[start:start + CLAUSE_CHUNK])[0]
            bar.update(len(items[start:start + CLAUSE_CHUNK]))
    config = scorer.model.config
    return (logits, np.asarray(rows["label"], dtype=np.float64), np.array([i.response is None for i in items]),
            (float(config.temperature), config.request_temperature))


def set_temperature(model_dir: str | Path, temperature: float, request_temperature: float | None = None) -> None:
    """Rewrite ``config.json`` with ``temperature`` (atomically; all other keys kept as they are); a
    clause-reading CSRM's ``request_temperature`` is set too (``None``: requests use ``temperature``)."""
    path = Path(model_dir) / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["temperature"] = float(temperature)
    if config.get("model_type") == "csrm_clause":
        config["request_temperature"] = None if request_temperature is None else float(request_temperature)
    write_json(path, config)
