"""Tables of the rule-reading evaluation (:mod:`eval.rule_reading`): one row per scorer, one column per
measure, with the scorer-free reference rows and the issue's targets beneath. Used by ``python -m
eval.rule_reading``, ``csrm eval``'s report and the ``csrm run`` report (:func:`run_rows`)."""

from __future__ import annotations

from typing import Any

MODEL, BLANKED, LENGTHS, RELEVANCE = "model", "config blanked", "lengths-only probe", "rule-relevance probe"
TARGETS = {"swap": 0.90, "removal": 0.85, "pairs": 0.95, "auroc": 0.80, "f1_tuned": 0.652, "named_rule": 0.70}
HEADER = ["Scorer", "rule swap", "rule removal (rules left / empty)", "within-transcript pairs",
          "AUROC [95% interval over violated rules]",
          "F1 dev-tuned", "named rule", "length: dP(comply) 115 -> 20k chars repeated; no repeats", "violation flagged, stored threshold (short / in 20k)"]


def _share(value: Any) -> str:
    return "–" if value is None else f"{value:.3f}"


def _pct(value: Any) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _auroc(m: dict[str, Any]) -> str:
    """The AUROC and, where there is one, its interval over violated-rule clusters (:mod:`eval.rule_clusters`)."""
    interval = m.get("auroc_interval")
    if m.get("auroc") is None or not interval:
        return _pct(m.get("auroc"))
    return f"{_pct(m['auroc'])} [{_pct(interval['low'])}, {_pct(interval['high'])}]"


def measure_cells(m: dict[str, Any]) -> list[str]:
    """The measure cells of one scorer's column (:func:`eval.rule_reading.measures`)."""
    removal = m.get("removal") or {}
    length = m.get("length") or {}
    flagged = length.get("flagged_stored") or {}
    yes = {True: "yes", False: "no"}
    named = (m.get("named_rule") or {}).get("share")
    return [
        _share((m.get("swap") or {}).get("share")),
        f"{_share(removal.get('share'))} ({_share((removal.get('rules_left') or {}).get('share'))} / "
        f"{_share((removal.get('empty') or {}).get('share'))})",
        _share((m.get("pairs") or {}).get("share")),
        _auroc(m), _pct(m.get("f1_tuned")),
        "n/a" if named is None else _pct(named),
        "–" if "delta_benign" not in length else
        f"{length['delta_benign']:+.3f} ({length['p_comply']['benign']:.3f} -> {length['p_comply']['benign_long']:.3f})"
        + (f"; {length['delta_varied']:+.3f}" if "delta_varied" in length else ""),
        "–" if not flagged else f"{yes[flagged['violating']]} / {yes[flagged['violating_long']]}"
        + (" (benign 20k flagged too)" if flagged.get("benign_long") or flagged.get("benign_varied") else ""),
    ]


def reference_rows(block: dict[str, Any]) -> list[str]:
    """Rows that need no scorer: config-blind by construction, the length heuristic, always-FAIL, targets."""
    ref, t = block.get("references") or {}, block.get("targets") or TARGETS
    blank = ["–"] * 3
    return [
        _row(["config-blind (any; ties count 1/2)", "0.500", "0.500 (0.500 / 0.500)", "0.500", "50.0", "–", "–",
              *blank[:2]]),
        _row(["shorter policy is the FAIL one", "–", "–", _share(ref.get("shorter_policy_fail")), "–", "–", "–",
              *blank[:2]]),
        _row(["always FAIL", "–", "–", "–", "50.0", _pct(ref.get("always_fail_f1")), "–", *blank[:2]]),
        _row(["target (issue #28)", f">= {t['swap']:.2f}", f">= {t['removal']:.2f}", f">= {t['pairs']:.2f}",
              f">= {100 * t['auroc']:.0f} and lengths-only + 5", f">= {100 * t['f1_tuned']:.1f}",
              f">= {100 * t['named_rule']:.0f}", "|dP| <= 0.05", "yes / yes"]),
    ]


def counts_line(block: dict[str, Any]) -> str:
    """How many items each measure rests on, and where they came from."""
    m = next(iter((block.get("columns") or {}).values()), {})
    removal = m.get("removal") or {}
    on = block.get("contrasts_on", "all")
    return (f"Data: `{block.get('source', '')}`, {block.get('n_items')} items (contrasts built from "
            f"{'all of them' if on == 'all' else f'the {on} split'}); rule swap over "
            f"{(m.get('swap') or {}).get('n')} single-rule FAIL items (donor: another `{block.get('group_key')}`, "
            f"closest policy length), rule removal over {removal.get('n')} FAIL items "
            f"({(removal.get('rules_left') or {}).get('n')} with rules left, {(removal.get('empty') or {}).get('n')} "
            f"single-rule, emptied), {(m.get('pairs') or {}).get('n')} within-transcript pairs; AUROC and F1 on "
            f"{m.get('n_test')} test items (threshold tuned on the dev slice); named rule over "
            f"{(m.get('named_rule') or {}).get('n')} FAIL items{_clusters(m)}. Shares: the original (FAIL) item scores "
            "more violating than its copy or PASS twin, ties 1/2.")


def _clusters(m: dict[str, Any]) -> str:
    """What the AUROC interval resamples (:mod:`eval.rule_clusters`), for the counts line."""
    interval = m.get("auroc_interval")
    if not interval:
        return ""
    return (f"; the AUROC interval resamples the test FAIL items' {interval['fail_clusters']} distinct violated "
            f"rules (variants merged; the largest holds {interval['largest_cluster']} of {interval['fail_items']} "
            f"items) and the {interval['pass_items']} PASS items")


def by_rule_line(m: dict[str, Any], who: str) -> list[str]:
    """Which violated rules the AUROC rests on (:mod:`eval.rule_clusters`): each large cluster's own AUROC."""
    interval = m.get("auroc_interval") or {}
    if not interval.get("by_rule"):
        return []
    parts = [f"*{c['rule'][:70]}{'...' if len(c['rule']) > 70 else ''}* ({c['fail_items']} items) {_share(c['pass_below'])}"
             for c in interval["by_rule"]]
    other = interval.get("other_rules") or {}
    if other.get("fail_items"):
        parts.append(f"the other {other['rules']} rules ({other['fail_items']} items) {_share(other['pass_below'])}")
    return ["", f"AUROC of {who} by violated rule (share of PASS items scored below that rule's FAIL items): "
            + "; ".join(parts) + "."]


def block_markdown(block: dict[str, Any], *, title: str, label: str = "") -> list[str]:
    """One block as a Markdown section: counts, the table (scorer columns then references)."""
    if block.get("status") != "ok":
        return [f"### {title}", "", f"Skipped: {block.get('reason', '')}"]
    lines = [f"### {title}", "", counts_line(block), "", _row(HEADER), _row(["---"] * len(HEADER))]
    for name, m in block["columns"].items():
        who = label or "this scorer"
        lines.append(_row([who if name == MODEL else f"{who}, {name}" if name == BLANKED else name,
                           *measure_cells(m)]))
    lines += reference_rows(block)
    return lines + by_rule_line(block["columns"].get(MODEL) or {}, label or "this scorer")


def run_rows(blocks: dict[str, dict[str, Any]]) -> list[str]:
    """The ``csrm run`` report's rule-reading section from each evaluated model's block (label -> block):
    every model's own row, the control rows (config blanked, lengths-only probe, rule-relevance probe) of the main model (label
    ``csrm``, else the first model evaluated with its config), then the references."""
    ok = {label: b for label, b in blocks.items() if (b or {}).get("status") == "ok"}
    if not ok:
        return []
    with_controls = [label for label, b in ok.items() if BLANKED in b["columns"]]
    first_label = "csrm" if "csrm" in ok else (with_controls or list(ok))[0]
    first = ok[first_label]
    lines = ["### Rule reading (issue #28)", "", counts_line(first), "", _row(HEADER), _row(["---"] * len(HEADER))]
    for label, block in ok.items():
        lines.append(_row([label, *measure_cells(block["columns"][MODEL])]))
    for name in (BLANKED, LENGTHS, RELEVANCE):
        if name in first["columns"]:
            who = {BLANKED: f"{first_label}, {name}", LENGTHS: f"{name} (fitted on the dev slice)",
                   RELEVANCE: f"{name} (zero-shot: rule-turn similarity, no violation judged)"}[name]
            lines.append(_row([who, *measure_cells(first["columns"][name])]))
    return lines + reference_rows(first) + by_rule_line(first["columns"][MODEL], first_label) + [""]
