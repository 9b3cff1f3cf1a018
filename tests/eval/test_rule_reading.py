"""The rule-reading evaluation (eval/rule_reading.py, rule_tests.py, rule_length.py, rule_report.py) on tiny
rule sets in the DynaBench hub schema, scored by fake scorers whose answers the tests control: one that reads
the rules (1.0 on swap, removal and pairs), a config-blind one (0.5), and a length-keyed one (the "shorter
policy is the FAIL one" heuristic). No trained model is involved."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from rule_reading_fixtures import Blind, LengthKeyed, Reader, make_items, rule_rows

from csrm.base.rule_text import split_rules
from csrm.base.score_types import ScoreResult
from eval.benchmarks import LoadedBenchmark
from eval.harness import evaluate
from eval.items import DEV, TEST
from eval.report import build_report, markdown
from eval.rule_length import BENIGN, TARGET_CHARS, VIOLATING, length_items
from eval.rule_reading import (
    BLANKED,
    LENGTHS,
    MODEL,
    RELEVANCE,
    benchmark_block,
    measures,
    share_more_violating,
)
from eval.rule_report import block_markdown, run_rows
from eval.rule_tests import (
    load_rule_data,
    removal_contrasts,
    remove_rules,
    shorter_policy_share,
    swap_contrasts,
    transcript_pairs,
)
from tools import rule_reading as rule_reading_tool


def test_contrasts_are_built_as_specified():
    items = make_items()
    swaps = swap_contrasts(items)
    assert len(swaps) == 6  # every single-rule FAIL item has a donor of the other group
    for c in swaps:
        original = items[c.index]
        donor = next(it for it in items if it.item.config == c.changed.config)
        assert donor.extra["metadata"]["business_impact"] != original.extra["metadata"]["business_impact"]
        assert c.changed.messages == original.item.messages and c.changed.response == original.item.response
        # the closest length among the other group's single-rule policies
        others = [len(it.item.config) for it in items if it.label_violation and it.extra["metadata"]["num_rules"] == 1
                  and it.extra["metadata"]["business_impact"] != original.extra["metadata"]["business_impact"]]
        assert abs(len(c.changed.config) - len(original.item.config)) == min(
            abs(n - len(original.item.config)) for n in others)
    removals = removal_contrasts(items)
    assert sorted(c.note for c in removals) == ["empty"] * 6 + ["rules left"] * 3
    left = [c for c in removals if c.note == "rules left"]
    assert all([r.number for r in split_rules(c.changed.config)] == [0, 2] for c in left)
    assert len(transcript_pairs(items)) == 3
    assert shorter_policy_share(items, transcript_pairs(items)) == pytest.approx(2 / 3)


def test_remove_rules_keeps_the_rest_verbatim_and_refuses_what_it_cannot_locate():
    policy = "Preamble line.\n0. First rule.\n  - a sub item\n1. Second rule.\n\n2. Third rule."
    assert remove_rules(policy, [1]) == "Preamble line.\n0. First rule.\n  - a sub item\n2. Third rule."
    assert remove_rules(policy, [0, 2]) == "Preamble line.\n1. Second rule."
    assert remove_rules(policy, [5]) is None  # not in the policy
    assert remove_rules("1. A.\n1. B.", [1]) is None  # written twice: cannot tell which
    assert remove_rules("0. Only rule.", [0]) == ""


def test_share_counts_ties_as_one_half():
    assert share_more_violating([0.9, 0.5, 0.1], [0.1, 0.5, 0.9]) == pytest.approx(0.5)
    assert share_more_violating([0.5], [0.5 + 1e-8]) == 0.5  # batching noise is a tie
    assert share_more_violating([], []) is None


def test_a_reader_scores_one_a_blind_scorer_one_half_and_a_length_scorer_the_heuristic():
    items = make_items()
    reader = measures(Reader(), items)
    assert reader["swap"]["share"] == 1.0 and reader["removal"]["share"] == 1.0 and reader["pairs"]["share"] == 1.0
    assert reader["removal"]["empty"]["share"] == 1.0 and reader["removal"]["rules_left"]["share"] == 1.0
    assert reader["auroc"] == 1.0 and reader["f1_tuned"] == 1.0
    blind = measures(Blind(), items)
    assert (blind["swap"]["share"], blind["removal"]["share"], blind["pairs"]["share"]) == (0.5, 0.5, 0.5)
    keyed = measures(LengthKeyed(), items)
    assert keyed["pairs"]["share"] == pytest.approx(shorter_policy_share(items, transcript_pairs(items)))
    assert keyed["removal"]["share"] == 0.0  # removing a rule shortens the policy: "more violating"


def test_named_rule_accuracy_reads_evidence_or_says_not_available():
    items = make_items()
    assert measures(Reader(evidence=True), items, length_test=False)["named_rule"] == {"n": 9, "share": 1.0}
    assert measures(Reader(evidence=True, wrong_rule=True), items, length_test=False)["named_rule"]["share"] == 0.0
    assert measures(Reader(), items, length_test=False)["named_rule"] == {"n": 9, "share": None}
    assert "| n/a |" in "\n".join(block_markdown(benchmark_block(Reader(), items), title="t"))


def test_length_test_items_and_verdicts():
    items = length_items()
    assert len(BENIGN) == 115
    assert TARGET_CHARS - 116 < len(items["benign_long"].response) <= TARGET_CHARS
    assert items["violating_long"].response.count(VIOLATING) == 1
    varied = re.split(r"(?<=[.!?]) ", items["benign_varied"].response)
    assert TARGET_CHARS - 200 < len(items["benign_varied"].response) <= TARGET_CHARS
    assert len(varied) == len(set(varied)) > 150  # no sentence repeats
    assert len({it.config for it in items.values()}) == 1
    steady = measures(Reader(), make_items())["length"]
    assert steady["delta_benign"] == steady["delta_varied"] == 0.0 and steady["drift_ok"] and steady["varied_drift_ok"]
    assert steady["flagged_stored"] == {"benign": False, "benign_long": False, "violating": True,
                                        "violating_long": True, "benign_varied": False}

    class Drifting:  # P(complies) falls with the answer's length, as a product over windows does
        def score_items(self, batch):
            return [ScoreResult(p := 1 / (1 + len(it.response) / 5000), p, p >= 0.5, 0.5) for it in batch]

    drift = measures(Drifting(), make_items())["length"]
    assert drift["delta_benign"] < -0.05 and not drift["drift_ok"] and drift["flagged_stored"]["benign_long"]
    assert drift["delta_varied"] < -0.05 and not drift["varied_drift_ok"] and drift["flagged_stored"]["benign_varied"]
    block = benchmark_block(Drifting(), make_items(), controls=False)
    assert "(benign 20k flagged too)" in "\n".join(block_markdown(block, title="t"))


def test_block_has_the_controls_and_the_blind_case_is_blind_throughout():
    items = make_items()
    block = benchmark_block(Reader(), items)
    assert set(block["columns"]) == {MODEL, BLANKED, LENGTHS, RELEVANCE}
    assert block["columns"][BLANKED]["swap"]["share"] == 0.5  # the reader with the policy blanked
    assert block["references"]["shorter_policy_fail"] == pytest.approx(2 / 3)
    assert block["references"]["always_fail_f1"] == pytest.approx(2 * 6 / (9 + 6))  # 6 of the 9 test items FAIL
    blind = benchmark_block(Reader(), items, blind=True)
    assert set(blind["columns"]) == {MODEL, LENGTHS, RELEVANCE}
    assert blind["columns"][MODEL]["swap"]["share"] == 0.5 and blind["columns"][MODEL]["removal"]["share"] == 0.5


def test_generated_rule_data_runs_the_same_tests(tmp_path: Path):
    rows = rule_rows()
    for r in rows:
        meta = json.loads(r["metadata"])
        meta["family"] = {"leakage": "disclosure", "experience": "obligation"}[meta.pop("business_impact")]
        r["metadata"] = json.dumps(meta)
    (tmp_path / "rules").mkdir()
    for split, part in (("dev", rows), ("test", rows)):
        (tmp_path / "rules" / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    items, source = load_rule_data(tmp_path)
    assert {it.split for it in items} == {DEV, TEST} and source.endswith("rules")
    block = benchmark_block(Reader(), items, group_key="family")
    model = block["columns"][MODEL]
    assert model["swap"]["n"] == 12 and model["swap"]["share"] == 1.0 and model["pairs"]["share"] == 1.0
    assert block["groups"] == ["disclosure", "obligation"]
    blind = benchmark_block(Blind(), items, group_key="family")["columns"][MODEL]
    assert blind["swap"]["share"] == 0.5
    on_test = benchmark_block(Reader(), items, group_key="family", contrasts_on=TEST, controls=False)
    assert on_test["columns"][MODEL]["swap"]["n"] == 6 and on_test["columns"][MODEL]["removal"]["n"] == 9
    assert on_test["columns"][MODEL]["n_test"] == 14  # AUROC/F1: every test item, threshold from dev.jsonl


def test_cli_prints_the_table(tmp_path: Path, monkeypatch, capsys):
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rule_rows() * 3))
    import eval.models

    monkeypatch.setattr(eval.models, "load_scorer", lambda spec: Reader())
    out = tmp_path / "rr.json"
    assert rule_reading_tool.main(["fake", "--no-dynabench", "--rule-data", str(tmp_path), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Rule reading, generated rule data" in text and "| this scorer | 1.000 |" in text
    assert json.loads(out.read_text())["generated rule data (test split)"]["status"] == "ok"


def test_every_report_with_dynabench_carries_the_rows(tmp_path: Path):
    """csrm eval's report (eval/report.py) and the csrm run report (csrm/app/run_report.py)."""
    items = make_items()
    bench = LoadedBenchmark(name="dynabench", title="DynaBench", items=items, source="fake", views={"headline": ""},
                            dev_rule="every third", hub_id="")
    reader = Reader()
    run = evaluate(reader, {"dynabench": bench}, model="reader")
    report = build_report(run, published={})
    assert report["benchmarks"]["dynabench"]["rule_reading"]["columns"][MODEL]["swap"]["share"] == 1.0
    assert "### Rule reading, DynaBench: `reader`" in markdown(report)
    assert evaluate(Reader(), {"dynabench": bench}, rule_reading=False).runs["dynabench"].rule_reading is None

    from csrm.app.run_report import build_run_report

    blind_report = build_report(evaluate(Blind(), {"dynabench": bench}, model="config_blind", blind=True), {})
    for label, rep in (("csrm", report), ("config_blind", blind_report)):
        (tmp_path / "eval" / label).mkdir(parents=True)
        (tmp_path / "eval" / label / "report.json").write_text(json.dumps(rep))
    text, data = build_run_report(SimpleNamespace(out=tmp_path, cfg=SimpleNamespace(name="t", about="")))
    section = text.split("### Rule reading (issue #28)")[1]
    assert "| csrm | 1.000 |" in section and "| config_blind | 0.500 |" in section
    assert "| csrm, config blanked | 0.500 |" in section and "lengths-only probe (fitted on the dev slice)" in section
    assert "| shorter policy is the FAIL one |" in section
    assert data["benchmarks"]["dynabench"]["csrm"]["extra"]["rule_reading"]["status"] == "ok"
    assert run_rows({"x": {"status": "skipped"}}) == []
