"""Generated rule data end to end (small run through the CLI): schema round-trip through csrm.base.rule_text,
labels from code, contrasts, split disjointness, and the lengths-only probe."""

from __future__ import annotations

import json
import math
import random
from collections import defaultdict

import pytest

from augmentation.recipe import load_recipe
from augmentation.rules.balance import lengths_probe_auroc
from csrm.app.augment import main
from csrm.base.errors import InputError
from csrm.base.rule_text import agent_turns, split_rules, split_turns

SPLITS = ("train", "dev", "test")


@pytest.fixture(scope="module")
def generated(tmp_path_factory, shared_data) -> dict:
    out = tmp_path_factory.mktemp("rules")
    assert main(["configs/augment/rules.yaml", f"output_dir={out}", "rules.scaffolds_per_family=60",
                 "progress=false"]) == 0
    rows = {s: [json.loads(line) for line in (out / "rules" / f"{s}.jsonl").open()] for s in SPLITS}
    for split in rows.values():
        for row in split:
            row["meta"] = json.loads(row["metadata"])
    return {"rows": rows, "manifest": json.loads((out / "rules" / "manifest.json").read_text())}


def test_schema_round_trip_and_labels(generated):
    families = set()
    for split, rows in generated["rows"].items():
        assert rows
        for row in rows:
            assert set(row) == {"policy", "transcript", "label", "base_id", "metadata", "meta"}
            meta, rules, turns = row["meta"], split_rules(row["policy"]), split_turns(row["transcript"])
            assert meta["split"] == split and meta["num_rules"] == len(rules) and meta["num_turns"] == len(turns)
            assert [r.number for r in rules] == list(range(1, len(rules) + 1))
            assert (row["label"] == "FAIL") == bool(meta["violations"])
            assert meta["rules_violated"] == sorted({r for r, _ in meta["violations"]})
            for number, turn in meta["violations"]:
                assert 1 <= number <= len(rules) and turn in agent_turns(turns)
            families.add(meta["family"])
    assert families == {"disclosure", "obligation", "topic", "format", "conduct"}
    # a violating transcript and its compliant twin: two base_ids, one conversation (the trainer's hard negatives)
    kinds = defaultdict(set)
    for row in generated["rows"]["train"]:
        kinds[row["meta"]["conversation"]].add((row["meta"]["transcript_kind"], row["base_id"]))
    twins = [k for k in kinds.values() if {kind for kind, _ in k} == {"fail", "ok"}]
    assert len(twins) > 0.8 * len(kinds) and all(len({b for _, b in k}) == 2 for k in twins)


def test_contrasts_flip_and_keep_labels(generated):
    seen = defaultdict(int)
    for rows in generated["rows"].values():
        by_base = defaultdict(dict)
        for row in rows:
            by_base[row["base_id"]][row["meta"]["contrast"]] = row
        for variants in by_base.values():
            original = variants.get("original")
            for contrast, row in variants.items():
                seen[contrast] += 1
                if contrast in ("rule_removed", "rule_swapped"):
                    assert row["label"] == "PASS" and row["meta"]["transcript_kind"] == "fail"
                    assert row["meta"]["target_rule"] is None
                if row["meta"]["transcript_kind"] == "ok":
                    assert row["label"] == "PASS"
                elif contrast in ("original", "shuffled", "distractors"):
                    assert row["label"] == "FAIL" and row["meta"]["rules_violated"] == [row["meta"]["target_rule"]]
                if original and contrast in ("rule_removed", "shuffled"):
                    assert row["transcript"] == original["transcript"]
                    before = {r.text for r in split_rules(original["policy"])}
                    after = {r.text for r in split_rules(row["policy"])}
                    assert after == before if contrast == "shuffled" else len(before - after) == 1
                if original and contrast == "rule_swapped":
                    assert row["meta"]["num_rules"] == original["meta"]["num_rules"]
    assert all(seen[c] for c in ("original", "rule_removed", "rule_swapped", "distractors", "shuffled"))


def test_policy_sizes_and_positions(generated):
    rows = [r for split in generated["rows"].values() for r in split]
    sizes = [r["meta"]["num_rules"] for r in rows]
    assert min(sizes) == 1 and max(sizes) >= 60
    fail_turns = {r["meta"]["violations"][0][1] for r in rows if r["label"] == "FAIL"}
    assert len(fail_turns) >= 3  # violations sit in several Agent turn positions, not only the last


def test_splits_disjoint_in_wordings_values_and_bases(generated):
    rows = generated["rows"]
    texts = {s: {r.text for row in rows[s] for r in split_rules(row["policy"])} for s in SPLITS}
    templates = {s: {row["meta"]["template"] for row in rows[s]} for s in SPLITS}
    bases = {s: {row["base_id"] for row in rows[s]} for s in SPLITS}
    for a, b in (("train", "test"), ("train", "dev"), ("dev", "test")):
        assert not texts[a] & texts[b] and not templates[a] & templates[b] and not bases[a] & bases[b]


def test_lengths_probe_is_near_chance_and_can_fail(generated):
    test = generated["rows"]["test"]
    auroc = lengths_probe_auroc(test)
    assert auroc <= 0.60, auroc
    assert generated["manifest"]["splits"]["test"]["lengths_probe_auroc_cv"] == round(auroc, 4)
    # the probe does see lengths when they predict the label
    rng = random.Random(0)
    confounded = [{"policy": "1. Do not swear." + " x" * rng.randint(0, 50) * (r["label"] == "FAIL"),
                   "transcript": r["transcript"], "label": r["label"]} for r in test]
    assert lengths_probe_auroc(confounded) > 0.75


def test_rules_recipe_errors_name_the_field(tmp_path):
    with pytest.raises(InputError, match="rules.families"):
        load_recipe("configs/augment/rules.yaml", ["rules.families=[poetry]"])
    assert load_recipe("configs/augment/rules.yaml").rules.enabled


def test_lengths_probe_on_a_split_too_small_for_five_folds():
    rows = [{"policy": "1. Never say x." * (k + 1), "transcript": "User: hi\nAgent: " + "y" * (10 * k + 5),
             "label": label} for k, label in enumerate(["FAIL"] * 3 + ["PASS"] * 7)]
    assert 0.0 <= lengths_probe_auroc(rows) <= 1.0  # three folds, not a crash
    assert math.isnan(lengths_probe_auroc(rows[2:]))  # one FAIL row: nothing to cross-validate


def test_the_topic_gate_never_removes_a_violating_pair(generated):
    """The gate (``csrm.model.rule.conditions``) is one-sided: a rule whose topic the User turns up to an Agent
    turn have not named cannot be broken there. On the generator's violating (rule, turn) pairs, whose
    conditions name Faker's people and companies ("If the user's message refers to Kelly-Horne, ..."), it never
    says otherwise; some of them hold terms the gate checks, so a gate that reads too much fails here."""
    from csrm.model.rule.conditions import cannot_apply, topic_terms

    checked = 0
    for rows in generated["rows"].values():
        for row in rows:
            rules = {r.number: r.text for r in split_rules(row["policy"])}
            turns = split_turns(row["transcript"])
            for number, turn in row["meta"]["violations"]:
                said = " ".join(t.text for t in turns[: turn + 1] if t.role == "user")
                checked += bool(topic_terms(rules[number]))
                assert not cannot_apply(rules[number], said), (rules[number], said)
    assert checked >= 10


def _clock_at(day):  # noqa: ANN001, ANN202
    """Stand-ins for Faker's ``datetime`` and ``date`` whose now and today are ``day``."""
    import datetime as real

    class Clock(real.datetime):
        @classmethod
        def now(cls, tz=None):  # noqa: ANN206
            return day.replace(tzinfo=tz)

    class AnyDate(type):  # Faker also asks isinstance(value, date) of the dates it is given
        def __instancecheck__(cls, value) -> bool:  # noqa: ANN001, N805
            return isinstance(value, real.date)

    class Calendar(real.date, metaclass=AnyDate):
        @classmethod
        def today(cls):  # noqa: ANN206
            return day.date()

    return Clock, Calendar


def test_the_data_does_not_depend_on_the_day_it_is_generated(tmp_path, shared_data, monkeypatch):
    """Faker's relative dates ("-1y", an age) follow the clock; the generator anchors every date to a fixed day,
    so the same recipe writes the same rows on any day (it did not: the recipe's rule data and judge changed
    between 2026-12-07 and 2026-12-08)."""
    import datetime as real

    from faker.providers import date_time

    texts = []
    for day in (real.datetime(2026, 12, 7, 12), real.datetime(2031, 6, 1, 12)):
        clock, calendar = _clock_at(day)
        monkeypatch.setattr(date_time, "datetime", clock)
        monkeypatch.setattr(date_time, "dtdate", calendar)
        out = tmp_path / day.strftime("%Y")
        assert main(["configs/augment/rules.yaml", f"output_dir={out}", "rules.scaffolds_per_family=12",
                     "rules.families=[disclosure,obligation]", "progress=false"]) == 0
        texts.append((out / "rules" / "train.jsonl").read_text())
    assert texts[0] == texts[1] and any(m in texts[0] for m in ("January", "June", "December", "/19", "-19"))
