"""Shared-prefix (KV cache reuse) scoring equals the plain full-sequence path on a tiny Llama."""

from __future__ import annotations

from collections import Counter

import pytest
from scoring_fixtures import (
    CONFIGS,
    RESPONSES,
    grid_items,
    # noqa: F401
    tiny_decoder,
)

import csrm.model.cross_encoder.predictor
from csrm.base.score_types import ScoreItem
from csrm.model.formatting import Encoded
from csrm.model.prefix_cache import plan_prefix_batches, split_point, supports_prefix_cache
from csrm.scoring.scorer import Scorer


@pytest.fixture(scope="module")
def decoder():
    return tiny_decoder(max_length=96)


@pytest.fixture
def prefix_calls(monkeypatch):
    """Record every shared-prefix batch the scorer runs."""
    calls = []
    original = csrm.model.cross_encoder.predictor.run_prefix_batch

    def spy(model, batch, pad_id, device):
        calls.append(batch)
        return original(model, batch, pad_id, device)

    monkeypatch.setattr(csrm.model.cross_encoder.predictor, "run_prefix_batch", spy)
    return calls


def items_with_conversations() -> list[ScoreItem]:
    long_turn = "Earlier context. " * 30  # forces truncation at max_length 96 (conversation is cut first)
    conv = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello, how can I help?"},
            {"role": "user", "content": "Describe a sword fight."}]
    items = grid_items()
    items += [ScoreItem(CONFIGS[1], conv, r) for r in RESPONSES]
    items += [ScoreItem(CONFIGS[0], [{"role": "user", "content": long_turn}], r) for r in RESPONSES]
    items.append(ScoreItem("A config used once.", [{"role": "user", "content": "alone"}], "single"))
    return items


@pytest.mark.parametrize("max_tokens", [8192, 300])
def test_shared_prefix_equals_plain_path(decoder, prefix_calls, max_tokens):
    model, tok = decoder
    items = items_with_conversations()
    scorer = Scorer(model, tok, prefix_cache=True, max_tokens=max_tokens)
    cached = scorer.score_items(items)
    assert prefix_calls, "the shared-prefix path did not run"
    prefixes = Counter(tuple(e.input_ids[: split_point(e)]) for e in scorer.predictor.encode(items))
    assert sum(n for n in prefixes.values() if n > 1) == sum(len(b.items) for b in prefix_calls) >= 45
    assert 1 < sum(n == 1 for n in prefixes.values()) < 8  # the single-use config, truncated long turns
    assert any(len(b.prefixes) > 1 for b in prefix_calls)  # several prefixes (of different lengths) per batch
    if max_tokens == 300:
        assert len(prefix_calls) > len({tuple(p) for b in prefix_calls for p in b.prefixes}) // 2
    prefix_calls.clear()
    plain = Scorer(model, tok, prefix_cache=False, max_tokens=max_tokens).score_items(items)
    assert not prefix_calls
    assert len({round(r.p_comply, 5) for r in plain}) > len(items) // 2
    for a, b in zip(cached, plain, strict=True):
        assert abs(a.p_comply - b.p_comply) < 1e-4
        assert abs(a.reward - b.reward) < 1e-4


def test_decoder_scorer_uses_prefix_cache_by_default(decoder):
    model, tok = decoder
    assert supports_prefix_cache(model)
    assert Scorer(model, tok).prefix_cache


def test_plan_groups_identical_prefixes_under_budget():
    enc = [Encoded([1, 2, 3, 4, 10 + i], 4, False) for i in range(6)]  # one prefix, six responses
    enc += [Encoded([1, 2, 9, 20 + i, 21], 3, False) for i in range(3)]  # another prefix
    enc.append(Encoded([7, 8, 9], 2, False))  # a lone prefix
    enc.append(Encoded([5, 6], 2, False))  # prefix = whole sequence: split keeps one suffix token
    batches, singles = plan_prefix_batches(enc, max_tokens=16, max_rows=8)
    assert singles == [9, 10]
    assert sorted(i for b in batches for i in b.items) == list(range(9))
    for b in batches:
        assert b.cost() <= 16
        for item, suffix, owner in zip(b.items, b.suffixes, b.owners, strict=True):
            assert b.prefixes[owner] + suffix == enc[item].input_ids
    assert len(batches) > 1  # the budget split the first group
