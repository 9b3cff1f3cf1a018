"""The reports of ``csrm align``: ``round_i/metrics.json``, and ``report.json`` / ``report.md`` comparing the
policy before and after (CoSA-Score, violation rate, per config; pairs, DPO margins and wall time per round;
each independent judge's before -> after with its item-bootstrap interval (:mod:`csrm.alignment.gain`), and
the reward-hacking check of :mod:`csrm.alignment.audit`). An evaluation-only run (``rounds=0``) reports the start
policy's metrics under ``evaluation``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from csrm.alignment.audit import answer_profile, cosa_without_repetition
from csrm.alignment.cosa_score import compare, render_markdown
from csrm.alignment.distributed import is_main
from csrm.alignment.gain import gain_interval, judgements_by_judge
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
    if baseline is not None and final is None:  # rounds=0: the start policy evaluated, nothing to compare
        report["evaluation"] = {"training": baseline["metrics"]["overall"],
                                **{name: r["metrics"]["overall"] for name, r in baseline.get("independent", {}).items()}}
        report["answer_profile"] = answer_profile(baseline["judgements"])
    if baseline is not None and final is not None:
        comparison = compare(baseline["metrics"], final["metrics"])
        report["comparison"] = comparison
        names = {i["config_id"]: f"{i.get('config_name') or 'config'} {i['config_id'][:6]}" for i in run.eval_items}
        lines = ["## Rounds", "", "Compliance pairs: the chosen response complies and the rejected one violates "
                 "(by the training judge's verdict); refusal chosen / rejected: pairs with the refusal candidate.",
                 "", "| round | pairs | compliance pairs | refusal chosen | refusal rejected | logp margin before "
                 "| after | DPO loss |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for m in rounds:
            lines.append(f"| {m.get('round')} | {m.get('pairs', 0)} | {m.get('compliance_pairs', 0)} "
                         f"| {m.get('refusal_chosen_pairs', 0)} | {m.get('refusal_rejected_pairs', 0)} "
                         f"| {fmt(m.get('logp_margin_before'))} "
                         f"| {fmt(m.get('logp_margin_after'))} | {fmt(m.get('train_loss'))} |")
        lines += ["", "## Wall time (s)", "", "| stage | " + " | ".join(STEPS) + " |",
                  "|---|" + "---:|" * len(STEPS)]
        for stage, seconds in report["seconds"].items():
            lines.append(f"| {stage} | " + " | ".join(fmt(seconds.get(s), 1) for s in STEPS) + " |")
        report["answer_profile"] = {"before": answer_profile(baseline["judgements"]),
                                    "after": answer_profile(final["judgements"])}
        lines += judges_table(baseline, final) + profile_table(report["answer_profile"])
        report["judges"] = {name: compare(baseline["independent"][name]["metrics"],
                                          final["independent"][name]["metrics"])["overall"]
                            for name in final.get("independent", {}) if name in baseline.get("independent", {})}
        before_by, after_by = judgements_by_judge(baseline), judgements_by_judge(final)
        report["gain_interval"] = {name: gain_interval(judged, [after_by[name]])
                                   for name, judged in before_by.items() if name in after_by}
        lines += gain_lines(report["gain_interval"])
        extra = "\n".join(lines)
        markdown = render_markdown(comparison, config_names={k: short(v) for k, v in names.items()}, extra=extra)
        if is_main():
            (run.out / "report.md").write_text(markdown, encoding="utf-8")
    if is_main():
        write_json(run.out / "report.json", report)
    return report


def gain_lines(intervals: dict[str, dict[str, Any]]) -> list[str]:
    """The CoSA-Score gain by each judge with its paired item-bootstrap interval (Markdown)."""
    lines = ["", "## How sure is the gain", "",
             "Paired bootstrap over the held-out items, within each config (`csrm.alignment.gain`): the interval "
             "is what item sampling alone allows.", "",
             "| judge | gain | 95% interval | items |", "|---|---:|---|---:|"]
    lines += [f"| {name} | {g['gain']:+.3f} | [{g['low']:+.3f}, {g['high']:+.3f}] | {g['items']} |"
              for name, g in intervals.items()]
    return lines


JUDGE_COLUMNS = (("cosa_score", "CoSA-Score"), ("violation_rate_disallowed", "violations on disallowed"),
                 ("refusal_rate_allowed", "refusals on allowed"), ("helpful_compliant_rate", "helpful+compliant"))


def judges_table(baseline: dict, final: dict) -> list[str]:
    """Before -> after of the training judge and of every independent judge, side by side (Markdown)."""
    header = ("| judge | " + " | ".join(f"{title} before → after" for _, title in JUDGE_COLUMNS)
              + " | CoSA-Score, repetitive answers unhelpful | agreement |")
    lines = ["", "## Judged independently", "", "The training judge built the pairs; the others never did. "
             "Agreement = share of answers (before, after) on whose verdict a judge agrees with the training judge. "
             "'Repetitive answers unhelpful': the same verdicts with h = 0 for answers that repeat a 4-gram "
             "(csrm.alignment.audit.cosa_without_repetition).",
             "", header, "|---|" + "---:|" * (len(JUDGE_COLUMNS) + 2)]
    rows = [("training judge (built the pairs)", baseline, final, None)]
    for name, after in final.get("independent", {}).items():
        before = baseline.get("independent", {}).get(name)
        if before is not None:
            rows.append((name, before, after, (before["agreement"], after["agreement"])))
    for name, before, after, agreement in rows:
        cells = []
        for key, _ in JUDGE_COLUMNS:
            b, a = before["metrics"]["overall"].get(key), after["metrics"]["overall"].get(key)
            delta = f" ({a - b:+.3f})" if a is not None and b is not None else ""
            cells.append(f"{fmt(b)} → {fmt(a)}{delta}")
        b, a = cosa_without_repetition(before["judgements"]), cosa_without_repetition(after["judgements"])
        cells.append(f"{fmt(b)} → {fmt(a)} ({a - b:+.3f})")
        agree = "–" if agreement is None else f"{agreement[0]:.2f}, {agreement[1]:.2f}"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {agree} |")
    for name, after in final.get("independent", {}).items():
        if "threshold" in after:
            lines.append(f"\n{name}: verdict threshold {after['threshold']:.3f} on P(violation), fitted on "
                         f"{after['dev_n']} labelled training requests (its AUROC there: {after['dev_auroc']:.3f}).")
    return lines


def profile_table(profiles: dict[str, dict]) -> list[str]:
    """The reward-hacking check (:func:`csrm.alignment.audit.answer_profile`) before and after, as Markdown."""
    lines = ["", "## Reward-hacking check: top-rewarded answers vs all", "",
             "| answers | n | mean chars | refusal rate | repetition rate | most common opening (share) |",
             "|---|---:|---:|---:|---:|---|"]
    for when, profile in profiles.items():
        for part in ("all", "top"):
            p = profile[part]
            lines.append(f"| {when}, {'top 10% by reward' if part == 'top' else 'all'} | {p['n']} "
                         f"| {p['mean_chars']:.0f} | {p['refusal_rate']:.2f} | {p['repetition_rate']:.2f} "
                         f"| \"{p['top_opening']}\" ({p['top_opening_share']:.2f}) |")
    return lines


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
