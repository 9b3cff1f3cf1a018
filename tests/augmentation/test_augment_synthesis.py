"""Config synthesis (every mode, severity flips, Other Harms), uncertain labels, templates and refusals."""

from __future__ import annotations

import random
import re

import pytest

from augmentation.recipe import MODES
from augmentation.refusals import REFUSALS, synthesize_refusal
from augmentation.sources import LabelledRecord
from augmentation.synthesis import Candidate, candidate_configs, record_label, select
from augmentation.templates import SEVERITY_STYLES, TEMPLATES, render_config
from csrm.base.compliance import complies, error_score
from csrm.base.records import as_messages
from csrm.base.safety_config import SafetyConfig
from csrm.base.taxonomy import RiskTaxonomy

V, P, F, S = "Violence", "Privacy Violations", "Financial Crime and Theft", "Sexual Misconduct, Exploitation, and Infidelity"
OTHER = "Other Harms"
TAX = RiskTaxonomy.default()


def rec(categories=(), severity=0, response="r", **kw) -> LabelledRecord:
    return LabelledRecord(messages=as_messages("q"), response=response, categories=tuple(categories),
                          severity=severity, source="t", **kw)


def candidates(record, draws=4, seed=0, modes=MODES):
    return candidate_configs(record, TAX, random.Random(seed), modes=modes, draws=draws)


def by_mode(cands):
    out: dict[str, list[Candidate]] = {}
    for c in cands:
        out.setdefault(c.mode, []).append(c)
    return out


def test_every_mode_is_made_with_the_expected_label():
    record = rec([V, P], 2)
    modes = by_mode(candidates(record))
    assert set(modes) == set(MODES)
    for c in modes["exact"]:
        assert set(c.allow_map) == {V, P} and min(c.allow_map.values()) >= 2
        assert record_label(c.config, record) == 1
    for c in modes["superset"]:
        assert {V, P} < set(c.allow_map)
        assert record_label(c.config, record) == 1
    assert [c.allow_map for c in modes["none"]] == [{}]
    assert record_label(modes["none"][0].config, record) == 0
    for c in modes["drop_one"]:
        assert not {V, P} <= set(c.allow_map)  # not a superset
        assert record_label(c.config, record) == 0


def test_severity_threshold_flips_between_adjacent_levels():
    for severity in (1, 2, 3):
        record = rec([V], severity)
        thresholds = [c for c in candidates(record, draws=6, modes=["severity_threshold"])]
        complying = [c for c in thresholds if c.allow_map.get(V) == severity]
        violating = [c for c in thresholds if c.allow_map.get(V, 0) == severity - 1]
        assert complying and violating
        assert all(record_label(c.config, record) == 1 for c in complying)
        assert all(record_label(c.config, record) == 0 for c in violating)
        # the flip: the same content one level milder complies with the lowered config
        if severity > 1:
            assert complies(violating[0].config, [V], severity - 1)


def test_severity_threshold_needs_a_graded_severity():
    modes = by_mode(candidates(rec([V], 2, severity_known=False)))
    assert "severity_threshold" not in modes and {"exact", "none", "drop_one", "superset"} <= set(modes)


def test_other_harms_is_never_allowed_and_always_violates():
    record = rec([V, OTHER], 2)
    cands = candidates(record, draws=6)
    assert cands
    for c in cands:
        assert OTHER not in c.allow_map
        assert record_label(c.config, record) == 0


def test_benign_records_only_comply():
    cands = candidates(rec([], 0))
    assert {c.mode for c in cands} <= {"none", "superset"}
    assert all(record_label(c.config, rec([], 0)) == 1 for c in cands)


def test_uncertain_labels_are_never_guessed():
    # flagged sexual at severity 2, but the severe-variant flag was missing: could be severity 3
    record = rec([S], 2, uncertain={S: 3})
    assert record_label(SafetyConfig(allow={S: 3}), record) == 1
    assert record_label(SafetyConfig(allow={S: 2}), record) is None
    assert record_label(SafetyConfig(allow={}), record) == 0
    # nothing known, some flags missing: only "allow the unknown" configs give a label
    unknown = rec([], 0, uncertain={S: 3, V: 2})
    assert record_label(SafetyConfig(allow={}), unknown) is None
    assert record_label(SafetyConfig(allow={S: 3, V: 3}), unknown) == 1
    # one severity per record: the worst case puts both unknown categories at severity 3
    assert record_label(SafetyConfig(allow={S: 3, V: 2}), unknown) is None
    labelled = [c for c in candidates(unknown, draws=6) if record_label(c.config, unknown) is not None]
    assert labelled and all(record_label(c.config, unknown) == 1 for c in labelled)


def test_candidates_are_unique_per_policy_and_deterministic():
    record = rec([V, P, F], 3)
    a, b = candidates(record, seed=7), candidates(record, seed=7)
    assert a == b
    assert len({c.policy_key for c in a}) == len(a)
    assert candidates(record, seed=8) != a


def test_select_alternates_labels_and_spreads_modes():
    record = rec([V, P], 2)
    labelled = [(c, record_label(c.config, record)) for c in candidates(record, draws=6)]
    picked = select(labelled, 4, random.Random(0))
    assert [label for _, label in picked].count(1) == 2
    assert len({c.mode for c, _ in picked}) >= 3
    assert select(labelled, 0, random.Random(0)) == []


# -- templates -----------------------------------------------------------------------------------------
LEVEL_PHRASES = {k: [style[k] for style in SEVERITY_STYLES] for k in (1, 2, 3)}


def test_at_least_eight_templates_each_stating_the_whole_policy():
    assert len(TEMPLATES) >= 8
    rng = random.Random(0)
    for name in TEMPLATES:
        for _ in range(20):
            text, used = render_config({V: 1, P: 2, F: 3}, TAX, rng, [name])
            assert used == name
            assert all(category in text for category in (V, P, F)), (name, text)
            assert any(p in text for p in LEVEL_PHRASES[1]), (name, text)  # each limit is stated
            assert any(p in text for p in LEVEL_PHRASES[2]), (name, text)
            mild_only, _ = render_config({V: 1}, TAX, rng, [name])
            assert any(p in mild_only for p in LEVEL_PHRASES[1])
            assert not any(p in mild_only for p in LEVEL_PHRASES[2] + LEVEL_PHRASES[3]), (name, mild_only)


def test_renderings_vary_in_wording_order_and_definitions():
    rng = random.Random(1)
    allow = {V: 3, P: 3, F: 2}
    texts = [render_config(allow, TAX, rng)[0] for _ in range(200)]
    assert len(set(texts)) > 150
    orders = {tuple(sorted(allow, key=t.index)) for t in texts}
    assert len(orders) >= 4  # category order shuffles
    assert any(TAX[V].definition in t for t in texts) and any(TAX[V].definition not in t for t in texts)
    assert {render_config(allow, TAX, random.Random(s))[1] for s in range(60)} == set(TEMPLATES)


def test_strict_policy_renders_without_allowing_anything():
    rng = random.Random(2)
    for name in TEMPLATES:
        text, _ = render_config({}, TAX, rng, [name])
        assert text
        assert not re.search(r"\bAllowed: (?!nothing)", text) and "yes," not in text


def test_rendering_is_deterministic_for_a_seed():
    allow = {V: 2}
    assert render_config(allow, TAX, random.Random(5)) == render_config(allow, TAX, random.Random(5))


# -- refusals ------------------------------------------------------------------------------------------
def test_refusals_are_varied_topic_free_and_rank_between_compliance_and_violation():
    assert len(set(REFUSALS)) >= 8
    for text in REFUSALS:
        assert not any(name.lower() in text.lower() for name in TAX.names)
    record = rec([V], 3, response="[specific violent instructions]")
    refusal = synthesize_refusal(record, random.Random(0))
    assert refusal.is_refusal and not refusal.helpful and refusal.categories == () and refusal.severity == 0
    assert refusal.prompt_id == record.prompt_id and refusal.messages == record.messages
    permissive, strict = SafetyConfig(allow={V: 3}), SafetyConfig(allow={})
    refusal_error = error_score(strict, (), 0, helpful=False)
    assert refusal_error == 1.0
    assert error_score(permissive, [V], 3, helpful=True) < refusal_error < error_score(strict, [V], 3, helpful=True)


@pytest.mark.parametrize("seed", range(3))
def test_random_policies_label_matches_the_rule(seed):
    rng = random.Random(seed)
    for _ in range(200):
        cats = rng.sample(TAX.names, rng.randint(0, 3))
        severity = rng.randint(1, 3) if cats else 0
        record = rec(cats, severity)
        for c in candidate_configs(record, TAX, rng, draws=1):
            assert record_label(c.config, record) == int(complies(c.config, record.categories, record.severity))
            assert OTHER not in c.allow_map
