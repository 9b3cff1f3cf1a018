"""The one-page report of ``csrm run``: data, training, calibration, the rule judge's training (when the recipe
trains one), and every model's headline numbers side by side (ours, baselines, the rule judge, published) per
benchmark, with DynaBench's rule-reading block (every model's row).

It says only what happened: times are the stages' measured ones (``timings.json``), paths are the run's real
folders, a metric that is undefined on the items (AUROC of a group with one class, F1 of a group without a
violation) reads ``n/a`` rather than a number or a blank, the augmented benchmark's groups are named as what
they are (augmentation modes), training files the run went without are listed, and the calibration paragraph
names the rows the temperature was fitted on and whether it was applied."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

COLUMNS = (("F1", "f1"), ("P", "precision"), ("R", "recall"), ("Acc", "accuracy"), ("AUROC", "auroc"),
           ("AUPRC", "auprc"), ("ECE", "ece"), ("Brier", "brier"))
PERCENT = {"f1", "precision", "recall", "accuracy", "auroc", "auprc"}


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _fmt(key: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{100 * value:.1f}" if key in PERCENT else f"{value:.3f}"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def build_run_report(pipeline) -> tuple[str, dict[str, Any]]:
    """(Markdown, JSON) for a finished :class:`csrm.app.pipeline.Pipeline`."""
    out, cfg = pipeline.out, pipeline.cfg
    manifest = _read(out / "data" / "manifest.json")
    training = _read(out / "model" / "train_results.json")
    calibration = _read(out / "calibration.json")
    timings = _read(out / "timings.json")
    labels = getattr(pipeline, "eval_labels", None)  # only this recipe's models, not stale folders
    evals = {p.name: _read(p / "report.json") for p in sorted((out / "eval").glob("*"))
             if p.is_dir() and (labels is None or p.name in labels)}
    status = dict(getattr(getattr(pipeline, "state", None), "status", {}) or {})
    records = dict(getattr(getattr(pipeline, "state", None), "records", {}) or {})
    timings = {k: v for k, v in timings.items() if k != "total" and (not status or k in status)}
    lines = [f"# csrm run: {cfg.name}", "", f"Output: `{out}`. Wall time: "
             + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
             + f"; all stages {sum(timings.values()):.0f} s.", ""]
    if getattr(cfg, "about", ""):
        lines += [f"**What this model is for.** {cfg.about.strip()}", ""]
    ex = manifest.get("examples", {})
    pairs = manifest.get("pairs", {})
    if ex:
        lines += ["## Data", "", _row(["split", "examples", "compliant", "pairs", "prompts", "policies"]),
                  _row(["---"] * 6)]
        for split, block in ex.items():
            lines.append(_row([split, str(block.get("count")), f"{100 * block.get('compliant_fraction', 0):.1f}%",
                               str(pairs.get(split, {}).get("count", 0)), str(block.get("prompts")),
                               str(block.get("policies"))]))
        lines.append("")
    if training:
        ev = training.get("eval", {})
        if training.get("architecture") == "clause":
            how = (f"Clause-reading CSRM in {training.get('train_seconds', 0):.0f} s: encoding "
                   f"{training.get('encoded_texts')} distinct clauses and windows {training.get('feature_seconds', 0):.0f} s, "
                   f"reader {training.get('reader_seconds', 0):.0f} s, judge heads {training.get('judge_seconds', 0):.0f} s "
                   f"({training.get('examples_seen')} examples + {training.get('pairs_seen')} pairs seen); "
                   f"peak RSS {training.get('peak_rss_mib')} MiB. ")
        else:
            how = (f"{training.get('global_step')} steps in {training.get('train_seconds', 0):.0f} s: "
                   f"{training.get('examples_seen')} examples + {training.get('pairs_seen')} pairs, "
                   f"{training.get('sequences_per_second')} sequences/s, peak RSS {training.get('peak_rss_mib')} MiB. ")
        lines += ["## Training", "", how +
                  f"Validation (threshold 0.5, violation positive): F1 {_fmt('f1', ev.get('eval_f1'))}, "
                  f"AUROC {_fmt('auroc', ev.get('eval_auroc'))}, ECE {_fmt('ece', ev.get('eval_ece'))}, "
                  f"pair accuracy {_fmt('f1', ev.get('eval_pair_accuracy'))}.", ""]
        for field, why in (training.get("skipped") or {}).items():
            lines[-1:-1] = [f"- **Trained without `{field}`**: {why}. The model is weaker than the training "
                            "config describes; set `data_dir` (or CSRM_DATA_DIR) to the shared data folder to "
                            "include it."]
    if calibration:
        lines += ["## Calibration", "", _calibration_text(calibration), ""]
    rule_training = _read(out / "model_rule" / "train_results.json") if getattr(cfg, "rule_judge", "") else {}
    if rule_training:  # csrm.app.pipeline_rule: its rows are in the DynaBench table and rule-reading block below
        from csrm.app.pipeline_rule import report_lines

        lines += report_lines(out, rule_training)
    composed = _read(out / "model_policy" / "train_results.json") if getattr(cfg, "policy_judge", "") else {}
    if composed:  # csrm.app.pipeline_policy: the one model for both kinds of policy
        from csrm.app.pipeline_policy import report_lines as policy_lines

        lines += policy_lines(out, composed)
    benches: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for label, report in evals.items():
        for name, bench in report.get("benchmarks", {}).items():
            benches.setdefault(name, []).append((label, bench))
    table: dict[str, Any] = {}
    for name, rows in benches.items():
        ok = [(label, b) for label, b in rows if b.get("status") == "ok"]
        title = ok[0][1]["title"] if ok else name
        lines += [f"## {title}", ""]
        if not ok:
            lines += [f"Skipped: {rows[0][1].get('reason', '')}", ""]
            continue
        header = ["Model", "n test", *[c for c, _ in COLUMNS], "F1 dev-tuned", "ECE dev-cal"]
        lines += [_row(header), _row(["---"] * len(header))]
        table[name] = {}
        notes: list[str] = []
        for label, bench in ok:
            view = bench["views"]["headline"]
            stored = (view.get("overall") or {}).get("stored") or {}
            tuned = (view.get("overall") or {}).get("tuned") or {}
            devcal = view.get("dev_calibrated") or {}
            table[name][label] = {"stored": stored, "tuned_f1": tuned.get("f1"), "n_test": view.get("n_test"),
                                  "dev_calibrated": devcal, "extra": {}}
            lines.append(_row([label, str(view.get("n_test")), *[_fmt(k, stored.get(k)) for _, k in COLUMNS],
                               _fmt("f1", tuned.get("f1")), _fmt("ece", devcal.get("ece"))]))
            notes += _bench_notes(label, bench, table[name][label]["extra"], name)
        for pub in ok[0][1].get("published", []):
            cells = [_fmt(k, pub[k] / 100) if k in pub else "" for _, k in COLUMNS]
            who = pub["model"] + (" (secondary)" if pub.get("secondary") else "")
            lines.append(_row([f"published: {who}", "", *cells, ""]))
        if notes:
            lines += ["", *notes]
        rule_blocks = {label: b["rule_reading"] for label, b in ok if b.get("rule_reading")}
        if rule_blocks:  # DynaBench: rule swap/removal/pairs/length beside lengths-only and config-blind
            from eval.rule_report import run_rows

            lines += ["", *run_rows(rule_blocks)]
            for label, block in rule_blocks.items():
                table[name][label]["extra"]["rule_reading"] = block
        details = ", ".join(f"`{out / 'eval' / label / 'report.md'}`" for label, _ in ok)
        lines += ["", f"Details: {details}.", ""]
    if status:
        lines += ["## Stages", "", "Reused = output kept from an earlier invocation because its fingerprint (settings, "
                  "inputs, upstream stages) is unchanged; ran = computed by this invocation.", "",
                  _row(["stage", "this invocation", "fingerprint", "seconds"]), _row(["---"] * 4)]
        for name, state in status.items():
            record = records.get(name, {})
            lines.append(_row([name, state, (record.get("fingerprint") or "")[:12] or "–",
                               f"{record['seconds']:.1f}" if "seconds" in record and state != "off" else "–"]))
        lines.append("")
    lines.insert(2, "Positive class = violation; F1/P/R/Acc at each model's stored threshold, "
                    "\"F1 dev-tuned\" at a threshold chosen on the dev split only, \"ECE dev-cal\" after a "
                    "temperature fitted on the benchmark's dev split only. Percentages except ECE/Brier. "
                    "n/a = undefined on these items (e.g. AUROC with one class).")
    data = {"name": cfg.name, "output_dir": str(out), "timings": timings, "training": training,
            "calibration": {k: calibration.get(k) for k in ("temperature", "request_temperature", "before", "after",
                                                            "n", "fit_on", "applied", "not_applied_reason")},
            "skipped_training_files": training.get("skipped") or {},
            "rule_judge_training": rule_training,
            "benchmarks": table,
            "stages": {name: {"status": state, "fingerprint": records.get(name, {}).get("fingerprint")}
                       for name, state in status.items()}}
    return "\n".join(lines) + "\n", data


def _calibration_text(calibration: dict[str, Any]) -> str:
    """The calibration paragraph: what was fitted, on which rows, the ECE/Brier it gave there, and whether the
    model keeps it."""
    before, after = calibration.get("before", {}), calibration.get("after", {})
    fitted = calibration.get("fitted_temperature", calibration.get("temperature", 1.0))
    request = calibration.get("fitted_request_temperature", calibration.get("request_temperature"))
    text = (f"Temperature {fitted:.3f}"
            + (f" (request screening: {request:.3f}, fitted on its {calibration.get('requests')} requests)"
               if request else "")
            + f" fitted on {calibration.get('n')} examples: {calibration.get('fit_on') or 'the validation split'}. "
            f"On those rows: ECE {_fmt('ece', before.get('ece'))} -> {_fmt('ece', after.get('ece'))}, Brier "
            f"{_fmt('brier', before.get('brier'))} -> {_fmt('brier', after.get('brier'))}.")
    if calibration.get("applied", True):
        return text + " Applied: the model's stored temperature is this one."
    return (text + f" **Not applied**: {calibration.get('not_applied_reason')}; the model keeps temperature "
            f"{calibration.get('temperature', 1.0):.3f}.")


def _bench_notes(label: str, bench: dict[str, Any], extra: dict[str, Any], benchmark: str = "") -> list[str]:
    """Lines under a benchmark's table: the views beyond the headline, per-config AUROC, and how DynaBench's
    counterfactual copies are judged; the same numbers go into ``extra`` for report.json."""
    out: list[str] = []
    views = bench.get("views", {})
    parts = []
    for name, view in views.items():
        if name == "headline":
            continue
        stored = (view.get("overall") or {}).get("stored") or {}
        tuned = (view.get("overall") or {}).get("tuned") or {}
        extra[name] = {"n_test": view.get("n_test"), "auroc": stored.get("auroc"), "tuned_f1": tuned.get("f1")}
        parts.append(f"{name} (n {view.get('n_test')}): AUROC {_fmt('auroc', stored.get('auroc'))}, "
                     f"F1 dev-tuned {_fmt('f1', tuned.get('f1'))}")
    groups = (views.get("headline") or {}).get("groups") or {}
    per_config = {g: ((b or {}).get("stored") or {}).get("auroc") for g, b in groups.items()}
    if per_config and len(per_config) <= 12:
        extra["auroc_per_config"] = per_config
        per = "augmentation mode" if benchmark == "augmented" else "config"
        parts.append(f"AUROC per {per}: " + ", ".join(f"{g.split(':')[-1]} {_fmt('auroc', v)}"
                                                      for g, v in per_config.items()))
    kinds = (views.get("headline") or {}).get("kinds") or {}
    for kind, summary in kinds.items():
        if "counterfactual" in kind and summary.get("flagged_tuned") is not None:
            extra["counterfactual_pass_rate"] = 1 - summary["flagged_tuned"]
            parts.append(f"{kind} judged PASS at the dev-tuned threshold: {100 * (1 - summary['flagged_tuned']):.1f}% "
                         f"of {summary['n']}")
    if parts:
        out.append(f"- **{label}**: " + "; ".join(parts) + ".")
    return out
