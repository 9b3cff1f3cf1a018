"""Reports of an :class:`~eval.harness.EvalRun`: ``report.json``, ``report.md`` (the printed table),
``predictions.jsonl``, and PNG plots (a reliability diagram and per-config F1 per benchmark).

Published numbers (``eval/published.yaml``) are shown beside ours, marked "published".
"""

from __future__ import annotations

import math
import re
import time
from pathlib import Path
from typing import Any

from csrm.base.io import load_yaml, write_json, write_jsonl
from csrm.base.plots import plot_bars, plot_reliability
from eval.analysis import clean_nan
from eval.harness import EvalRun
from eval.items import HEADLINE, TEST
from eval.rule_report import block_markdown

PUBLISHED_YAML = Path(__file__).resolve().parent / "published.yaml"
PERCENT = ("f1", "precision", "recall", "accuracy", "auroc", "auprc")
COLUMNS = (("F1", "f1"), ("P", "precision"), ("R", "recall"), ("Acc", "accuracy"), ("AUROC", "auroc"),
           ("AUPRC", "auprc"), ("ECE", "ece"), ("Brier", "brier"))


def load_published(path: str | Path = PUBLISHED_YAML) -> dict[str, list[dict[str, Any]]]:
    """``{benchmark: [{model, f1, secondary?}, ...]}`` from ``published.yaml``."""
    return {name: list(rows or []) for name, rows in load_yaml(path).items()}


def build_report(run: EvalRun, published: dict[str, list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    """The JSON-ready report (NaN -> null)."""
    published = load_published() if published is None else published
    benchmarks: dict[str, Any] = {}
    for name, br in run.runs.items():
        b = br.benchmark
        benchmarks[name] = {
            "status": "ok", "title": b.title, "source": b.source, "hub_id": b.hub_id, "dev_rule": b.dev_rule,
            "views": {view: {"description": b.views[view], **br.metrics[view]} for view in b.views},
            "counts": b.counts(), "notes": b.notes, "n_scored": len(br.scored),
            "seconds": round(br.seconds, 3), "items_per_second": br.items_per_second,
            "published": published.get(name, []),
        }
        if br.rule_reading is not None:
            benchmarks[name]["rule_reading"] = br.rule_reading
    for name, reason in run.skipped.items():
        benchmarks[name] = {"status": "skipped", "reason": reason, "published": published.get(name, [])}
    return clean_nan({
        "model": run.model, "blind": run.blind,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "positive_class": "violation (p_violation = 1 - p_comply)",
        "settings": run.settings, "benchmarks": benchmarks,
    })


def _fmt(key: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100 * value:.1f}" if key in PERCENT else f"{value:.3f}"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _metric_cells(block: dict[str, Any] | None) -> list[str]:
    stored = (block or {}).get("stored") or {}
    tuned = (block or {}).get("tuned") or {}
    return [_fmt(k, stored.get(k)) for _, k in COLUMNS] + [_fmt("f1", tuned.get("f1"))]


def markdown(report: dict[str, Any]) -> str:
    """The Markdown report: the headline table (ours beside published), then per-benchmark detail."""
    header = ["Benchmark", "Model", "n test", *[c for c, _ in COLUMNS], "F1 dev-tuned", "thr dev-tuned"]
    model = report["model"] + (" (config blanked)" if report.get("blind") else "")
    lines = [f"# CSRM evaluation: `{model}`", "",
             "Positive class = violation. F1, P, R, Acc at the scorer's stored threshold; AUROC, AUPRC, ECE, "
             "Brier threshold-free; \"F1 dev-tuned\" at the best-F1 threshold on P(violation) chosen on the dev "
             "split only. Percentages except ECE/Brier. Published rows are the papers' numbers, not ours.", "",
             _row(header), _row(["---"] * len(header))]
    skipped = []
    for name, bench in report["benchmarks"].items():
        if bench["status"] != "ok":
            skipped.append(f"- **{name}** skipped: {bench['reason']}")
        else:
            view = bench["views"][HEADLINE]
            thr = view.get("tuned_threshold")
            lines.append(_row([bench["title"], f"ours: `{model}`", str(view["n_test"]),
                               *_metric_cells(view["overall"]), _fmt("ece", thr)]))
        title = bench.get("title", name)
        for pub in bench.get("published", []):
            who = pub["model"] + (" (secondary)" if pub.get("secondary") else "")
            cells = [_fmt(k, pub[k] / 100 if k in PERCENT and k in pub else pub.get(k)) for _, k in COLUMNS]
            lines.append(_row([title, f"published: {who}", "", *cells, "", ""]))
    if skipped:
        lines += ["", *skipped]
    for bench in report["benchmarks"].values():
        if bench.get("rule_reading"):
            lines += ["", *block_markdown(bench["rule_reading"], title=f"Rule reading, {bench['title']}: `{model}`",
                                          label=model)]
    for name, bench in report["benchmarks"].items():
        if bench["status"] == "ok":
            lines += ["", *_benchmark_detail(name, bench)]
    return "\n".join(lines) + "\n"


def _benchmark_detail(name: str, bench: dict[str, Any]) -> list[str]:
    lines = [f"## {bench['title']}", "",
             f"Source: `{bench['source']}`. Dev rule: {bench['dev_rule']}. Scored {bench['n_scored']} items in "
             f"{bench['seconds']:.1f} s ({bench['items_per_second'] or 0:.1f} items/s).",
             "Counts (split: kind = n): " + "; ".join(
                 f"{split}: " + (", ".join(f"{k} = {n}" for k, n in kinds.items()) or "none")
                 for split, kinds in bench["counts"].items()), ""]
    lines += [f"- {note}" for note in bench["notes"]]
    header = ["View", "n test", *[c for c, _ in COLUMNS], "F1 dev-tuned", "thr", "description"]
    lines += ["", _row(header), _row(["---"] * len(header))]
    for view_name, view in bench["views"].items():
        lines.append(_row([view_name, str(view["n_test"]), *_metric_cells(view["overall"]),
                           _fmt("ece", view.get("tuned_threshold")), view["description"]]))
    for view_name, view in bench["views"].items():
        header = ["Config", "n", "positives", *[c for c, _ in COLUMNS], "F1 dev-tuned"]
        lines += ["", f"Per config, view `{view_name}` (test):", "", _row(header), _row(["---"] * len(header))]
        for group, block in view["groups"].items():
            stored = (block or {}).get("stored") or {}
            lines.append(_row([group, str(stored.get("n", 0)), str(stored.get("positives", 0)),
                               *_metric_cells(block)]))
        if view_name == HEADLINE or len(view["kinds"]) > 1:
            lines += ["", f"By source label, view `{view_name}` (test):", "",
                      _row(["Kind", "n", "label", "mean P(violation)", "flagged (stored)", "flagged (dev-tuned)"]),
                      _row(["---"] * 6)]
            for kind, k in view["kinds"].items():
                lines.append(_row([kind, str(k["n"]), "/".join(map(str, k["label"])),
                                   _fmt("ece", k["mean_p_violation"]), _fmt("f1", k["flagged_stored"]),
                                   _fmt("f1", k["flagged_tuned"])]))
    return lines


def _label(group: str, width: int = 42) -> str:
    """A plot label: underscores as spaces, dots as " + ", long names shortened in the middle."""
    text = group.replace("_", " ").replace(".", " + ")
    return text if len(text) <= width else text[: width // 2 - 1] + "…" + text[-(width // 2 - 1):]


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "benchmark"


def write_report(run: EvalRun, out_dir: str | Path, *, published: dict[str, list[dict[str, Any]]] | None = None
                 ) -> dict[str, Path]:
    """Write report.json, report.md, predictions.jsonl and the PNG plots; returns ``{kind: path}``."""
    out = Path(out_dir)
    report = build_report(run, published)
    paths: dict[str, Path] = {"json": out / "report.json", "markdown": out / "report.md",
                              "predictions": out / "predictions.jsonl"}
    write_json(paths["json"], report)
    paths["markdown"].parent.mkdir(parents=True, exist_ok=True)
    paths["markdown"].write_text(markdown(report), encoding="utf-8")
    write_jsonl(paths["predictions"], (
        {"benchmark": name, "item_id": s.item.item_id, "group": s.item.group, "kind": s.item.kind,
         "split": s.item.split, "label_violation": s.item.label_violation, "views": s.item.views,
         "p_comply": float(s.result.p_comply), "complies": bool(s.result.complies),
         "threshold": float(s.result.threshold), "reward": float(s.result.reward)}
        for name, br in run.runs.items() for s in br.scored))
    curves = {}
    for name, br in run.runs.items():
        test = [s for s in br.scored if s.item.split == TEST and HEADLINE in s.item.views]
        if test:
            curves[br.benchmark.title] = ([s.item.views[HEADLINE] for s in test], [s.p_violation for s in test])
        groups = report["benchmarks"][name]["views"][HEADLINE]["groups"]
        f1 = {_label(g): (b or {}).get("stored", {}).get("f1") for g, b in groups.items()}
        f1 = {g: v for g, v in f1.items() if v is not None}
        if f1:
            paths[f"f1_{name}"] = plot_bars(out / f"f1_by_config_{slug(name)}.png", f1, ylabel="F1 (stored threshold)",
                                            title=f"{br.benchmark.title}: F1 per config (test)")
    if curves:
        paths["reliability"] = plot_reliability(out / "reliability.png", curves,
                                                title=f"Reliability, test, {run.model}")
    return paths


def log_report(report: dict[str, Any], paths: dict[str, Path], report_to: str | list[str] | None, *,
               out_dir: str | Path | None = None) -> str | None:
    """Log an evaluation to wandb if ``report_to`` asks for it: every view's overall metrics (stored and
    dev-tuned threshold) per benchmark, a per-config table, and the PNG plots (:mod:`csrm.base.tracking`)."""
    from csrm.base.tracking import log_results

    metrics: dict[str, Any] = {}
    rows: list[list[Any]] = []
    for name, bench in report["benchmarks"].items():
        if bench.get("status") != "ok":
            continue
        metrics[name] = {view: {"n_test": block.get("n_test"), **(block.get("overall") or {})}
                         for view, block in bench["views"].items()}
        for group, block in (bench["views"].get(HEADLINE, {}).get("groups") or {}).items():
            stored = (block or {}).get("stored") or {}
            rows.append([name, group, stored.get("n"), stored.get("f1"), stored.get("auroc"), stored.get("ece")])
    images = {key: path for key, path in paths.items() if str(path).endswith(".png")}
    return log_results(report_to, job_type="eval", name=f"eval {report['model']}", metrics=metrics, images=images,
                       tables={"per_config": (["benchmark", "config", "n", "f1", "auroc", "ece"], rows)},
                       config={"model": report["model"], "blind": report["blind"], **report["settings"]},
                       dir=out_dir)
