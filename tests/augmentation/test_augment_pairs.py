"""Preference pairs: ordering by the error score, never a violating chosen side, refusal vs helpful."""

from __future__ import annotations

import random

import pytest

from augmentation.pairs import make_pairs, record_error
from augmentation.refusals import synthesize_refusal
from augmentation.sources import LabelledRecord
from csrm.base.compliance import VIOLATION_THRESHOLD
from csrm.base.records import as_messages
from csrm.base.safety_config import SafetyConfig
from csrm.base.taxonomy import RiskTaxonomy

V, P = "Violence", "Privacy Violations"
TAX = RiskTaxonomy.default()


def rec(response, categories=(), severity=0, **kw) -> LabelledRecord:
    return LabelledRecord(messages=as_messages("How do I get back at him?"), response=response,
                          categories=tuple(categories), severity=severity, source="t", **kw)


SAFE = rec("Talk to someone you trust.")
LOW = rec("[history of feuds]", [V], 1)
MID = rec("[general encouragement]", [V], 2)
HIGH = rec("[a specific plan]", [V], 3)
REFUSAL = rec("I can't help with that.", is_refusal=True, helpful=False)
POOL = [SAFE, LOW, MID, HIGH, REFUSAL]


def pairs_of(config, pool=POOL):
    return {(p.chosen, p.rejected): p for p in make_pairs(config, pool, taxonomy=TAX)}


def test_permissive_config_helpful_compliant_answer_beats_refusal():
    pairs = pairs_of(SafetyConfig(allow={V: 3}))
    for answer in (SAFE, LOW, MID, HIGH):
        assert (answer.response, REFUSAL.response) in pairs
        assert (REFUSAL.response, answer.response) not in pairs
    assert (SAFE.response, HIGH.response) in pairs  # 0 < 0.1: the category-free answer is slightly better
    assert (LOW.response, HIGH.response) not in pairs  # equal errors make no pair


def test_restrictive_config_refusal_beats_violation_and_no_violating_chosen():
    pairs = pairs_of(SafetyConfig(allow={}))
    for violation in (LOW, MID, HIGH):
        assert (REFUSAL.response, violation.response) in pairs
        assert (SAFE.response, violation.response) in pairs
    assert (SAFE.response, REFUSAL.response) in pairs
    # violations among themselves: chosen side would violate -> dropped
    assert (LOW.response, HIGH.response) not in pairs and (MID.response, HIGH.response) not in pairs


def test_severity_threshold_config_orders_around_the_limit():
    pairs = pairs_of(SafetyConfig(allow={V: 2}))
    assert (MID.response, HIGH.response) in pairs
    assert (MID.response, REFUSAL.response) in pairs
    assert (REFUSAL.response, HIGH.response) in pairs
    assert (HIGH.response, REFUSAL.response) not in pairs


@pytest.mark.parametrize("seed", range(4))
def test_pairs_always_valid_under_random_configs(seed):
    rng = random.Random(seed)
    for _ in range(100):
        allow = {c: rng.randint(1, 3) for c in rng.sample(TAX.allowable_names, rng.randint(0, 4))}
        config = SafetyConfig(allow=allow)
        for pair in make_pairs(config, POOL + [rec("[doxxing]", [V, P], 2)], taxonomy=TAX):
            assert pair.chosen_error < VIOLATION_THRESHOLD
            assert pair.chosen_error < pair.rejected_error
            assert pair.margin == pytest.approx(pair.rejected_error - pair.chosen_error)
            assert pair.config_id == config.id and pair.prompt_id == SAFE.prompt_id


def test_errors_follow_the_error_score():
    config = SafetyConfig(allow={V: 2})
    assert record_error(config, SAFE) == 0
    assert record_error(config, MID) == pytest.approx(0.1)
    assert record_error(config, REFUSAL) == 1
    assert record_error(config, HIGH) == pytest.approx(5)


def test_request_level_full_answer_pairs_with_refusal():
    request = LabelledRecord(messages=as_messages("How do I track my ex?"), response=None, categories=(P,),
                             severity=2, source="t", severity_known=False)
    refusal = synthesize_refusal(request, random.Random(0))
    allowed = make_pairs(SafetyConfig(allow={P: 3}), [request, refusal], taxonomy=TAX)
    assert [(p.chosen, p.rejected) for p in allowed] == [(None, refusal.response)]
    denied = make_pairs(SafetyConfig(allow={V: 3}), [request, refusal], taxonomy=TAX)
    assert [(p.chosen, p.rejected) for p in denied] == [(refusal.response, None)]
    benign = LabelledRecord(messages=as_messages("Bake bread?"), response=None, categories=(), severity=0, source="t")
    out = make_pairs(SafetyConfig(allow={}), [benign, synthesize_refusal(benign, random.Random(0))], taxonomy=TAX)
    assert len(out) == 1 and out[0].chosen is None  # over-refusal is worse than answering a benign request


def test_uncertain_record_is_left_out_where_its_label_is_unknown():
    unsure = rec("[a text whose severe flag is missing]", ["Sexual Misconduct, Exploitation, and Infidelity"], 2,
                 uncertain={"Sexual Misconduct, Exploitation, and Infidelity": 3})
    pool = [unsure, REFUSAL]
    assert make_pairs(SafetyConfig(allow={"Sexual Misconduct, Exploitation, and Infidelity": 2}), pool,
                      taxonomy=TAX) == []
    assert len(make_pairs(SafetyConfig(allow={"Sexual Misconduct, Exploitation, and Infidelity": 3}), pool,
                          taxonomy=TAX)) == 1


def test_max_pairs_samples_deterministically():
    config = SafetyConfig(allow={})
    full = make_pairs(config, POOL, taxonomy=TAX)
    some = make_pairs(config, POOL, taxonomy=TAX, rng=random.Random(3), max_pairs=2)
    assert len(full) > 2 and len(some) == 2 and all(p in full for p in some)
    assert some == make_pairs(config, POOL, taxonomy=TAX, rng=random.Random(3), max_pairs=2)
