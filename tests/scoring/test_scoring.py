"""Scorer: batch/single/multi-config agreement, token-budget batching, thresholds, loading."""

from __future__ import annotations

import json
import random

import pytest
import torch
from scoring_fixtures import (
    CONFIGS,
    PROMPTS,
    RESPONSES,
    grid_items,
    save,
    # noqa: F401
    tiny_decoder,
    tiny_encoder,
)

from csrm.base.safety_config import SafetyConfig
from csrm.base.score_types import ScoreItem
from csrm.model.batching import (
    CPU_MAX_TOKENS,
    DEFAULT_MAX_TOKENS,
    default_max_tokens,
    padded_tokens,
    token_budget_batches,
)
from csrm.scoring.ranking import rank_key
from csrm.scoring.scorer import Scorer, load, resolve_bf16
from csrm.scoring.thresholds import config_key, fit_threshold, fit_thresholds, save_thresholds


@pytest.fixture(scope="module")
def encoder():
    return tiny_encoder()


@pytest.fixture(scope="module", params=["encoder", "decoder"])
def scorer(request, encoder):
    model, tok = encoder if request.param == "encoder" else tiny_decoder()
    return Scorer(model, tok, max_tokens=512)


def close(a, b, tol=1e-5):
    return abs(a.p_comply - b.p_comply) < tol and abs(a.reward - b.reward) < tol and a.complies == b.complies


# -- batching ----------------------------------------------------------------------------------------------
def test_token_budget_batches_respect_budget_and_cover_every_item_once():
    rng = random.Random(0)
    lengths = [rng.randint(5, 300) for _ in range(500)] + [1000]
    batches = token_budget_batches(lengths, max_tokens=2048, max_rows=64)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        width = max(lengths[i] for i in b)
        assert len(b) <= 64
        assert len(b) * width <= 2048 or len(b) == 1  # the 1000-token item runs alone
    # length sorting wastes far less padding than batching in input order under the same row count
    naive = [list(range(i, min(i + len(batches[0]), len(lengths)))) for i in range(0, len(lengths), len(batches[0]))]
    assert padded_tokens(lengths, batches) < 0.8 * padded_tokens(lengths, naive)
    assert padded_tokens(lengths, batches) < 1.15 * sum(lengths)


def test_default_token_budget_is_smaller_on_cpu(encoder):
    model, tok = encoder
    cpu = Scorer(model, tok, device="cpu")
    assert cpu.max_tokens == CPU_MAX_TOKENS < DEFAULT_MAX_TOKENS == cpu.predictor.prefix_max_tokens
    given = Scorer(model, tok, device="cpu", max_tokens=300)
    assert given.max_tokens == given.predictor.prefix_max_tokens == 300
    assert default_max_tokens("cuda") == DEFAULT_MAX_TOKENS


def test_token_budget_rejects_bad_budget():
    with pytest.raises(ValueError):
        token_budget_batches([3], max_tokens=0)


# -- agreement ---------------------------------------------------------------------------------------------
def test_batch_single_and_multi_config_calls_agree(scorer):
    items = grid_items()
    batch = scorer.score_items(items)
    assert len({round(r.p_comply, 6) for r in batch}) > len(items) // 2  # scores really depend on the input
    for item, expected in zip(items[::7], batch[::7], strict=True):
        assert close(scorer.score(item.config, item.messages, item.response), expected)
    prompt, response = PROMPTS[1], RESPONSES[2]
    multi = scorer.score(CONFIGS, prompt, response)
    assert len(multi) == len(CONFIGS)
    for config, result in zip(CONFIGS, multi, strict=True):
        assert close(result, scorer.score(config, prompt, response))
    assert all(close(a, b) for a, b in zip(scorer.score_configs(CONFIGS, prompt, response), multi, strict=True))
    again = scorer.score_batch([i.config for i in items], [i.messages for i in items], [i.response for i in items])
    assert all(close(a, b) for a, b in zip(again, batch, strict=True))


def test_streaming_batches_cover_items_and_match(scorer):
    items = grid_items()
    expected = scorer.score_items(items)
    seen = []
    for indices, results in scorer.iter_batches(items):
        seen += indices
        assert all(close(r, expected[i]) for i, r in zip(indices, results, strict=True))
    assert sorted(seen) == list(range(len(items)))


def test_safety_config_and_string_give_the_same_score(scorer):
    config = SafetyConfig(text=CONFIGS[0], name="strict")
    assert close(scorer.score(config, PROMPTS[0], RESPONSES[0]), scorer.score(CONFIGS[0], PROMPTS[0], RESPONSES[0]))
    structured = SafetyConfig(allow={"Violence": 2})
    assert close(scorer.score(structured, PROMPTS[0]), scorer.score(structured.render(scorer.taxonomy), PROMPTS[0]))


def test_score_responses_ranks_compliant_first_then_by_reward(scorer):
    ranked = scorer.score_responses(CONFIGS[1], PROMPTS[1], RESPONSES)
    assert sorted(r.index for r in ranked) == list(range(len(RESPONSES)))
    keys = [rank_key(r.result) for r in ranked]
    assert keys == sorted(keys)
    assert [r.rank for r in ranked] == list(range(len(RESPONSES)))
    for r in ranked:
        assert close(r.result, scorer.score(CONFIGS[1], PROMPTS[1], RESPONSES[r.index]))
        assert r.error >= 3 if not r.result.complies else r.error < 1


def test_calibration_temperature_is_applied(encoder):
    model, tok = encoder
    scorer = Scorer(model, tok)
    base = scorer.score(CONFIGS[0], PROMPTS[0], RESPONSES[1])
    logit = torch.logit(torch.tensor(base.p_comply, dtype=torch.float64)).item()
    model.config.temperature = 2.0
    try:
        hot = scorer.score(CONFIGS[0], PROMPTS[0], RESPONSES[1])
    finally:
        model.config.temperature = 1.0
    assert hot.p_comply == pytest.approx(torch.sigmoid(torch.tensor(logit / 2.0)).item(), abs=1e-5)
    assert hot.reward == pytest.approx(base.reward, abs=1e-6)


def test_bf16_only_where_supported_or_asked(encoder):
    assert resolve_bf16(None, torch.device("cpu")) is False
    assert resolve_bf16(True, torch.device("cpu")) is True
    model, tok = encoder
    fp32 = Scorer(model, tok).score_items(grid_items()[:10])
    bf16 = Scorer(model, tok, bf16=True).score_items(grid_items()[:10])
    assert max(abs(a.p_comply - b.p_comply) for a, b in zip(fp32, bf16, strict=True)) < 0.05


def test_prefix_cache_flag_is_refused_for_encoders(encoder):
    with pytest.raises(ValueError, match="prefix_cache"):
        Scorer(*encoder, prefix_cache=True)


# -- thresholds --------------------------------------------------------------------------------------------
def test_verdict_is_p_violation_below_threshold(encoder):
    scorer = Scorer(*encoder)
    result = scorer.score(CONFIGS[0], PROMPTS[0], RESPONSES[1])
    model = scorer.model
    key = config_key(CONFIGS[0])
    for t in (result.p_violation - 1e-3, result.p_violation + 1e-3):
        model.config.config_thresholds = {key: t}
        got = scorer.score(CONFIGS[0], PROMPTS[0], RESPONSES[1])
        assert got.threshold == pytest.approx(t) and got.complies == (result.p_violation < t)
    # other configs keep the global default; a name key wins for SafetyConfig objects
    model.config.config_thresholds = {key: 0.01, "named": 0.99}
    try:
        assert scorer.threshold_for(CONFIGS[1]) == model.config.threshold
        assert scorer.threshold_for(SafetyConfig(text=CONFIGS[1], name="named")) == 0.99
        assert scorer.threshold_for(SafetyConfig(text=CONFIGS[0])) == 0.01
    finally:
        model.config.config_thresholds = None


def test_fit_threshold_reaches_target_precision_and_recall():
    rng = random.Random(0)
    labels = [rng.random() < 0.5 for _ in range(400)]  # True = complies
    p_comply = [min(1.0, max(0.0, (0.7 if y else 0.3) + rng.gauss(0, 0.2))) for y in labels]
    for target in (0.8, 0.9):
        t = fit_threshold(labels, p_comply, precision=target)
        flagged = [y for y, p in zip(labels, p_comply, strict=True) if 1 - p >= t]
        assert sum(not y for y in flagged) / len(flagged) >= target
        t = fit_threshold(labels, p_comply, recall=target)
        caught = sum(1 for y, p in zip(labels, p_comply, strict=True) if not y and 1 - p >= t)
        assert caught / sum(not y for y in labels) >= target


def test_fit_per_config_thresholds_and_save_with_model(tmp_path, encoder):
    model, tok = encoder
    path = save(model, tok, tmp_path / "model")
    scorer = load(path)
    rng = random.Random(1)
    items, labels = [], []
    for config in CONFIGS[:2]:
        for k in range(30):
            items.append(ScoreItem(config, [{"role": "user", "content": f"{PROMPTS[k % 3]} #{k}"}], RESPONSES[k % 4]))
            labels.append(int(rng.random() < 0.5))
    items.append(ScoreItem(CONFIGS[2], [{"role": "user", "content": "x"}], "y"))  # too few -> global only
    labels.append(1)
    fit = scorer.fit_thresholds(items, labels, recall=0.9, min_examples=20, save_to=path)
    assert set(fit.per_config) == {config_key(c) for c in CONFIGS[:2]}
    stored = json.loads((path / "config.json").read_text())
    assert stored["config_thresholds"] == pytest.approx(fit.per_config) and stored["threshold"] == fit.default
    reloaded = load(path)
    for config in CONFIGS[:2]:
        assert reloaded.threshold_for(config) == pytest.approx(fit.per_config[config_key(config)])
    assert reloaded.threshold_for(CONFIGS[2]) == pytest.approx(fit.default)
    assert not list(path.glob(".config.json.*"))  # atomic rewrite leaves no temp file
    # merging keeps earlier keys; replace drops them
    save_thresholds(path, per_config={"other": 0.3})
    assert set(json.loads((path / "config.json").read_text())["config_thresholds"]) == {*fit.per_config, "other"}
    save_thresholds(path, per_config={"other": 0.3}, replace=True)
    assert json.loads((path / "config.json").read_text())["config_thresholds"] == {"other": 0.3}


def test_fit_thresholds_needs_both_classes_per_config():
    fit = fit_thresholds(["a"] * 25 + ["b"] * 25, [1] * 25 + [0, 1] * 12 + [0], [0.9] * 25 + [0.4, 0.8] * 12 + [0.1],
                         precision=0.9, min_examples=20)
    assert set(fit.per_config) == {"b"}


def test_load_round_trip_gives_identical_scores(tmp_path):
    model, tok = tiny_decoder()
    path = save(model, tok, tmp_path / "dec")
    items = grid_items()[:12]
    direct = Scorer(model, tok).score_items(items)
    loaded = load(path)
    assert loaded.prefix_cache and not loaded.model.training
    assert all(close(a, b) for a, b in zip(loaded.score_items(items), direct, strict=True))


def test_every_registered_family_is_a_loadable_model_type(tmp_path):
    """csrm.base.validation (below the registry's layer) names the saved model types csrm.load accepts: the
    same set as the registry's families; a folder of another model type is an error naming it."""
    from csrm.base.errors import InputError
    from csrm.base.validation import CSRM_MODEL_TYPES
    from csrm.model.registry import FAMILIES, saved_family

    assert set(CSRM_MODEL_TYPES) == {f.model_type for f in FAMILIES.values()}
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(InputError, match="model_type 'bert'"):
        saved_family(tmp_path)
    with pytest.raises(InputError, match="not a saved CSRM folder"):
        load(tmp_path)


def test_result_json_carries_evidence_only_when_named():
    from csrm.base.score_types import Evidence, ScoreResult
    from csrm.scoring.score_file import result_row
    from csrm.scoring.server.schema import result_json

    plain = ScoreResult(p_comply=0.75, reward=1.1, complies=True, threshold=0.5)
    named = ScoreResult(p_comply=0.2, reward=-1.4, complies=False, threshold=0.5,
                        evidence=Evidence(rule_number=3, rule_text="Never share phone numbers.", turn_index=1,
                                          p_violation=0.8))
    assert result_json(plain) == {"p_comply": 0.75, "p_violation": 0.25, "reward": 1.1, "complies": True,
                                  "threshold": 0.5}
    assert result_json(named)["evidence"] == {"rule_number": 3, "rule_text": "Never share phone numbers.",
                                              "turn_index": 1, "p_violation": 0.8, "reason": ""}
    assert result_row("a", named, "cfg") == {"id": "a", **result_json(named), "config_id": "cfg"}
