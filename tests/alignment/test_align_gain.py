"""The CoSA-Score gain's paired bootstrap (csrm/alignment/gain.py) on hand-made judgements."""

from __future__ import annotations

import json

import pytest

from csrm.alignment.cosa_score import Judgement, cosa_metrics
from csrm.alignment.gain import compare_runs, gain_interval
from csrm.base.errors import InputError
from tools.gain import main


def judged(values: dict[tuple[str, str], tuple[float, bool]]) -> list[dict]:
    """Judgement rows from {(config_id, item_id): (h, complies)}."""
    return [{"item_id": i, "config_id": c, "h": h, "complies": ok} for (c, i), (h, ok) in values.items()]


def cosa(rows: list[dict]) -> float:
    """The report's CoSA-Score (macro over configs) of the same rows."""
    js = [Judgement(r["item_id"], r["config_id"], "", r["complies"], 0.5, r["h"] == 0, r["h"], 0.0, 0.0, True)
          for r in rows]
    return cosa_metrics(js)["overall"]["cosa_score"]


# config a: 4 items, config b: 2 items (unequal sizes: the macro average is not the item mean)
BEFORE = judged({("a", "1"): (0.5, True), ("a", "2"): (0.8, False), ("a", "3"): (0.0, True), ("a", "4"): (0.6, True),
                 ("b", "5"): (0.9, False), ("b", "6"): (0.4, True)})
AFTER_1 = judged({("a", "1"): (0.7, True), ("a", "2"): (0.8, True), ("a", "3"): (0.5, True), ("a", "4"): (0.6, True),
                  ("b", "5"): (0.9, False), ("b", "6"): (0.6, True)})
AFTER_2 = judged({("a", "1"): (0.5, True), ("a", "2"): (0.8, False), ("a", "3"): (0.9, True), ("a", "4"): (0.2, False),
                  ("b", "5"): (0.3, True), ("b", "6"): (0.4, True)})


def test_point_estimate_is_the_reports_cosa_score_difference_averaged_over_runs():
    g = gain_interval(BEFORE, [AFTER_1, AFTER_2], draws=2000)
    per_run = [cosa(AFTER_1) - cosa(BEFORE), cosa(AFTER_2) - cosa(BEFORE)]
    assert g["per_run_gain"] == pytest.approx(per_run)
    assert g["gain"] == pytest.approx(sum(per_run) / 2)
    assert g["before"] == pytest.approx(cosa(BEFORE)) and g["items"] == 6 and g["configs"] == 2
    assert g["low"] <= g["gain"] <= g["high"] and g["low"] < g["high"]


def test_interval_shrinks_with_more_items_and_vanishes_without_change():
    small = gain_interval(BEFORE, [AFTER_1], draws=4000)

    def times(rows, k):  # the same answers under k times as many held-out items
        return [{**r, "item_id": f"{r['item_id']}.{n}"} for n in range(k) for r in rows]

    large = gain_interval(times(BEFORE, 16), [times(AFTER_1, 16)], draws=4000)
    assert large["gain"] == pytest.approx(small["gain"])
    assert (large["high"] - large["low"]) < 0.5 * (small["high"] - small["low"])
    same = gain_interval(BEFORE, [BEFORE])
    assert same["gain"] == same["low"] == same["high"] == 0.0


def test_runs_on_other_items_are_refused():
    with pytest.raises(InputError, match="other items"):
        gain_interval(BEFORE, [AFTER_1[:-1]])


def test_command_reads_eval_files_and_run_folders(tmp_path, capsys):
    def write(path, rows, independent):
        def metrics(judged):
            return {"overall": {"violation_rate_disallowed": sum(not r["complies"] for r in judged) / len(judged)}}

        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"judgements": rows, "metrics": metrics(rows), "independent": {
            "judge_b": {"judgements": independent, "metrics": metrics(independent)}}}))

    write(tmp_path / "base" / "baseline" / "eval.json", BEFORE, BEFORE)
    write(tmp_path / "run1" / "round_1" / "eval.json", AFTER_2, AFTER_2)  # an earlier round: not the last
    write(tmp_path / "run1" / "round_2" / "eval.json", AFTER_1, AFTER_2)
    result = compare_runs(tmp_path / "base", [tmp_path / "run1"])
    assert result["afters"] == [str(tmp_path / "run1" / "round_2" / "eval.json")]
    assert result["judges"]["training"]["gain"] == pytest.approx(cosa(AFTER_1) - cosa(BEFORE))
    assert result["judges"]["judge_b"]["gain"] == pytest.approx(cosa(AFTER_2) - cosa(BEFORE))
    assert result["rates"]["judge_b"]["violation_rate_disallowed"] == {"before": 2 / 6, "after": [2 / 6]}
    assert result["rates"]["training"]["violation_rate_disallowed"]["after"] == [1 / 6]
    assert result["rates"]["training"]["refusal_rate_allowed"] == {"before": None, "after": [None]}
    assert main([str(tmp_path / "base"), str(tmp_path / "run1"), "--judge", "judge_b",
                 "--out", str(tmp_path / "g.json")]) == 0
    assert "| judge_b |" in capsys.readouterr().out and "training" not in json.loads((tmp_path / "g.json").read_text())["judges"]
    assert main([str(tmp_path / "base"), str(tmp_path / "nowhere")]) == 2
