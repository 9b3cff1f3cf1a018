"""The reports of ``csrm align``: ``round_i/metrics.json``, and ``report.json`` / ``report.md`` comparing the
policy before and after (CoSA-Score, violation rate, per config; pairs, DPO margins and wall time per round)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from csrm.alignment.cosa_score import compare, render_markdown
from csrm.alignment.distributed import is_main
from csrm.alignment.state import STATE_FILE, STEPS, StepState
from csrm.base.io import write_json


def read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def write_round_metrics(folder: Path, state: StepState, round_eval: dict | None) -> None:
    """``round_i/metrics.json``: each step's numbers and seconds, plus the eval's overall metrics."""
    metrics = {"round": folder.name, "seconds": state.data["seconds"], **state.data["info"]}
    if round_eval is not None:
        metrics["eval"] = round_eval["metrics"]["overall"]
    write_json(folder / "metrics.json", metrics)


def write_report(run: Any, baseline: dict | None, final: dict | None, policy: str) -> dict[str, Any]:
    """``report.json`` (and with a baseline and a final eval, ``report.md``) of ``run`` (an AlignRun)."""
    rounds = [read_json(run.out / f"round_{i}" / "metrics.json") or {} for i in range(1, run.cfg.rounds + 1)]
    report: dict[str, Any] = {"final_policy": policy, "rounds": rounds,
                              "seconds": {k: v for k, v in all_timings(run.out, run.cfg.rounds).items()}}
    extra = ""
    if baseline is not None and final is not None:
        comparison = compare(baseline["metrics"], final["metrics"])
        report["comparison"] = comparison
        names = {i["config_id"]: f"{i.get('config_name') or 'config'} {i['config_id'][:6]}" for i in run.eval_items}
        lines = ["## Rounds", "", "| round | pairs | logp margin before | after | DPO loss |",
                 "|---|---:|---:|---:|---:|"]
        for m in rounds:
            lines.append(f"| {m.get('round')} | {m.get('pairs', 0)} | {fmt(m.get('logp_margin_before'))} "
                         f"| {fmt(m.get('logp_margin_after'))} | {fmt(m.get('train_loss'))} |")
        lines += ["", "## Wall time (s)", "", "| stage | " + " | ".join(STEPS) + " |",
                  "|---|" + "---:|" * len(STEPS)]
        for stage, seconds in report["seconds"].items():
            lines.append(f"| {stage} | " + " | ".join(fmt(seconds.get(s), 1) for s in STEPS) + " |")
        extra = "\n".join(lines)
        markdown = render_markdown(comparison, config_names={k: short(v) for k, v in names.items()}, extra=extra)
        if is_main():
            (run.out / "report.md").write_text(markdown, encoding="utf-8")
    if is_main():
        write_json(run.out / "report.json", report)
    return report


def all_timings(out: Path, rounds: int) -> dict[str, dict[str, float]]:
    """Seconds per step of the baseline and of each round, from their ``state.json``."""
    timings = {}
    for name in ["baseline"] + [f"round_{i}" for i in range(1, rounds + 1)]:
        state = out / name / STATE_FILE
        if state.is_file():
            timings[name] = json.loads(state.read_text(encoding="utf-8"))["seconds"]
    return timings


def fmt(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def short(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
