"""``csrm serve`` under faults and hostile clients: a failing item fails only its own request, small requests
are not starved behind large ones, timeouts and the pending limit hold, and the bearer token is enforced.

The batcher tests use a fake scorer (deterministic timing, no model); the auth tests use the real app."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from fastapi.testclient import TestClient
from scoring_fixtures import tiny_encoder

from csrm.app.serve import read_token
from csrm.base.errors import InputError
from csrm.base.score_types import ScoreItem, ScoreResult
from csrm.scoring.scorer import Scorer
from csrm.scoring.server import Batcher, Busy, create_app


class FakeScorer:
    """Scores an item as len(response) / 1000; raises on a "POISON" response; sleeps per call."""

    def __init__(self, seconds_per_call: float = 0.0):
        self.seconds, self.calls = seconds_per_call, []

    def score_items(self, items, thresholds=None):
        self.calls.append([i.item_id for i in items])
        time.sleep(self.seconds)
        if any(i.response == "POISON" for i in items):
            raise ValueError("tokenizer blew up")
        return [ScoreResult(p_comply=len(i.response or "") / 1000, reward=0.0, complies=True, threshold=0.5)
                for i in items]


def items(tag: str, n: int, response: str = "abc", chars: int = 0) -> list[ScoreItem]:
    return [ScoreItem("c" * chars or "c", [{"role": "user", "content": "p"}], response, item_id=f"{tag}{i}")
            for i in range(n)]


def test_a_failing_item_fails_only_its_own_request():
    scorer = FakeScorer()

    async def main():
        batcher = Batcher(scorer, wait_s=0.05)
        worker = batcher.start()
        jobs = [batcher.submit(items(f"r{k}-", 2, response="x" * (k + 1)), [0.5, 0.5]) for k in range(7)]
        jobs.insert(3, batcher.submit(items("bad-", 2, response="POISON"), [0.5, 0.5]))
        out = await asyncio.gather(*jobs, return_exceptions=True)
        worker.cancel()
        return batcher, out

    batcher, out = asyncio.run(main())
    assert isinstance(out[3], ValueError)
    valid = [o for i, o in enumerate(out) if i != 3]
    assert all(isinstance(o, list) for o in valid)
    for k, results in enumerate(valid):  # every valid request got its own answers
        assert [r.p_comply for r in results] == [(k + 1) / 1000] * 2
    assert batcher.stats["isolated_batches"] >= 1 and batcher.stats["failed_requests"] == 1
    assert scorer.calls[0] and len(scorer.calls[0]) == 16  # they had been batched together


def test_small_requests_are_not_starved_behind_large_ones():
    """A 64-item request that takes 16 batches is in flight when a 1-item request arrives: the small one is
    answered within a batch or two, long before the large one finishes."""
    scorer = FakeScorer(seconds_per_call=0.05)
    finished: dict[str, float] = {}

    async def main():
        batcher = Batcher(scorer, wait_s=0.0, max_tokens=4 * 1000)
        worker = batcher.start()

        async def timed(name, coro):
            await coro
            finished[name] = time.perf_counter()

        large = asyncio.create_task(timed("large", batcher.submit(items("L", 64, chars=3996), [0.5] * 64)))
        await asyncio.sleep(0.12)  # the large request is being worked through
        await timed("small", batcher.submit(items("S", 1), [0.5]))
        small_batches = len(scorer.calls)
        await large
        worker.cancel()
        return small_batches

    small_batches = asyncio.run(main())
    assert finished["small"] < finished["large"]
    assert small_batches <= 5, scorer.calls  # answered in the next batch, not after all 16 of the large one
    assert sum(len(c) for c in scorer.calls) == 65
    assert any("S0" in call and any(i.startswith("L") for i in call) for call in scorer.calls)


def test_timeout_drops_the_request_and_the_batcher_keeps_serving():
    scorer = FakeScorer(seconds_per_call=0.3)

    async def main():
        batcher = Batcher(scorer, wait_s=0.0)
        worker = batcher.start()
        with pytest.raises(TimeoutError):
            await batcher.submit(items("slow", 1), [0.5], timeout=0.05)
        queued = batcher.submit(items("late", 1), [0.5], timeout=0.01)  # still waiting behind the first
        with pytest.raises(TimeoutError):
            await queued
        ok = await batcher.submit(items("next", 1, response="abcd"), [0.5], timeout=5)
        worker.cancel()
        return batcher, ok

    batcher, ok = asyncio.run(main())
    assert ok[0].p_comply == pytest.approx(0.004)
    assert batcher.stats["timeouts"] == 2
    assert ["late0"] not in scorer.calls  # a request that timed out before its turn was never scored


def test_pending_limit_refuses_instead_of_queueing_without_bound():
    async def main():
        batcher = Batcher(FakeScorer(seconds_per_call=0.2), wait_s=0.0, max_pending=4)
        worker = batcher.start()
        running = asyncio.create_task(batcher.submit(items("a", 1), [0.5]))
        await asyncio.sleep(0.05)  # "a" is being scored; what follows waits
        waiting = asyncio.create_task(batcher.submit(items("b", 3), [0.5] * 3))
        await asyncio.sleep(0)
        assert batcher.pending == 3
        with pytest.raises(Busy):
            await batcher.submit(items("c", 2), [0.5] * 2)
        await asyncio.gather(running, waiting)
        again = await batcher.submit(items("d", 2), [0.5] * 2)
        worker.cancel()
        return again

    assert len(asyncio.run(main())) == 2


@pytest.fixture(scope="module")
def scorer():
    return Scorer(*tiny_encoder())


def test_bearer_token_is_required_everywhere_but_health(scorer):
    token = "s3cret-token-0123456789"
    body = {"items": [{"config": "c", "prompt": "p", "response": "r"}]}
    with TestClient(create_app(scorer, auth_token=token)) as client:
        assert client.get("/health").status_code == 200 and client.get("/health").json()["auth"] is True
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {token}"},
                        {"Authorization": f"Bearer {token}x"}):
            response = client.post("/score", json=body, headers=headers)
            assert response.status_code == 401, headers
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.json()["detail"][0]["loc"] == ["header", "authorization"]
        ok = client.post("/score", json=body, headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200 and len(ok.json()["results"]) == 1
        # unauthenticated bodies are not read: even an oversized one gets 401, not 413
        huge = client.post("/score", content=b"x" * 3_000_000, headers={"content-type": "application/json"})
        assert huge.status_code == 401


def test_token_sources(tmp_path, monkeypatch):
    path = tmp_path / "token"
    path.write_text("abc-def-ghi-jkl-mno\n")
    assert read_token(str(path), None) == "abc-def-ghi-jkl-mno"
    monkeypatch.setenv("CSRM_TOKEN_T", " from-env-0123456789 ")
    assert read_token(None, "CSRM_TOKEN_T") == "from-env-0123456789"
    assert read_token(None, None) is None
    path.write_text("  \n")
    for args, words in (((str(path), None), "empty token file"), ((str(tmp_path / "nope"), None), "no such file"),
                        ((str(path), "CSRM_TOKEN_T"), "not both")):
        with pytest.raises(InputError, match=words):
            read_token(*args)


def test_request_timeout_is_503_and_the_server_keeps_answering(scorer):
    slow = FakeScorer(seconds_per_call=0.5)
    slow.render, slow.threshold_for, slow.taxonomy = scorer.render, scorer.threshold_for, None
    body = json.dumps({"items": [{"config": "c", "prompt": "p", "response": "abc"}]})
    with TestClient(create_app(slow, request_timeout_s=0.1)) as client:
        response = client.post("/score", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 503 and response.json()["detail"][0]["type"] == "timeout"
        assert response.headers["retry-after"] == "1"
    with TestClient(create_app(slow, request_timeout_s=5)) as client:
        response = client.post("/score", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 200 and response.json()["results"][0]["p_comply"] == pytest.approx(0.003)


def test_requests_finish_in_deadline_order_not_all_together():
    """Four requests of one batch each, sent at once: with one timeout for all, each is answered one batch
    after the one before it (round-robin made all four wait for the fourth batch and finish together)."""
    scorer = FakeScorer(seconds_per_call=0.1)
    finished: dict[str, float] = {}

    async def main():
        batcher = Batcher(scorer, wait_s=0.05, max_tokens=4 * 1001)  # an item costs 1,001 estimated tokens
        worker = batcher.start()

        async def tracked(name):
            await batcher.submit(items(name, 4, chars=3996), [0.5] * 4, timeout=30)
            finished[name] = time.perf_counter()

        start = time.perf_counter()
        await asyncio.gather(*(tracked(f"r{k}-") for k in range(4)))
        worker.cancel()
        return start

    start = asyncio.run(main())
    order = sorted(finished, key=finished.get)
    assert order == ["r0-", "r1-", "r2-", "r3-"], finished
    gaps = [finished[b] - finished[a] for a, b in zip(order, order[1:], strict=False)]
    assert all(gap > 0.06 for gap in gaps), gaps  # a batch (0.1 s) apart, not together
    assert finished["r0-"] - start < 0.3  # the first is answered after its own batch
    assert [sorted({i.split("-")[0] for i in call}) for call in scorer.calls] == [["r0"], ["r1"], ["r2"], ["r3"]]


def test_admission_refuses_at_once_what_cannot_be_scored_in_time():
    """The measured throughput (warm-up, then every batch) bounds admission: a request that would finish after
    its timeout behind the queued work gets Busy immediately, with the seconds until the queue drains."""
    scorer = FakeScorer(seconds_per_call=0.2)

    async def main():
        batcher = Batcher(scorer, wait_s=0.0, max_tokens=4 * 1000)
        batcher.warm_up()
        rate = batcher.rate
        worker = batcher.start()
        first = asyncio.create_task(batcher.submit(items("a", 4, chars=3996), [0.5] * 4, timeout=30))
        await asyncio.sleep(0)
        start = time.perf_counter()
        with pytest.raises(Busy) as refused:  # 8,000 tokens queued with it: far beyond 0.75 x 0.01 s x rate
            await batcher.submit(items("b", 4, chars=3996), [0.5] * 4, timeout=0.01 * 4000 / rate)
        refused_after = time.perf_counter() - start
        admitted = await batcher.submit(items("c", 1), [0.5], timeout=30)  # fits: admitted and answered
        await first
        worker.cancel()
        return batcher, rate, refused.value, refused_after, admitted

    batcher, rate, refused, refused_after, admitted = asyncio.run(main())
    assert 0 < rate <= 16 * 128 / 0.2  # the warm-up batch (at most 16 items of 128 tokens) slept 0.2 s
    assert refused_after < 0.05 and refused.retry_after > 0 and "timeout" in str(refused)
    assert len(admitted) == 1 and batcher.stats["busy"] == 1 and batcher.stats["timeouts"] == 0
    assert not any(i.startswith("b") for call in scorer.calls for i in call)  # the refused request never ran


def test_small_batches_do_not_change_the_measured_rate():
    """A one-item batch at idle is mostly fixed overhead: it must not make the next burst look expensive."""
    scorer = FakeScorer(seconds_per_call=0.05)

    async def main():
        batcher = Batcher(scorer, wait_s=0.0, max_tokens=4 * 1001)
        batcher.warm_up()
        after_warm_up = batcher.rate
        worker = batcher.start()
        await batcher.submit(items("tiny", 1), [0.5], timeout=30)  # 2 estimated tokens in 0.05 s
        after_tiny = batcher.rate
        await batcher.submit(items("full", 4, chars=3996), [0.5] * 4, timeout=30)  # a full batch counts
        worker.cancel()
        return after_warm_up, after_tiny, batcher.rate, batcher.provisional

    after_warm_up, after_tiny, after_full, provisional = asyncio.run(main())
    assert after_tiny == after_warm_up  # unchanged by the tiny batch
    assert after_full != after_warm_up and not provisional  # measured on the full batch
