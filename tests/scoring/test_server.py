"""``csrm serve``: a real uvicorn server on 127.0.0.1 answering concurrent requests, batched, with 4xx errors."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import uvicorn
from scoring_fixtures import CONFIGS, PROMPTS, RESPONSES, serve

from csrm.scoring.server import create_app


@pytest.fixture(scope="module")
def server(decoder_scorer):
    url, stop = serve(create_app(decoder_scorer, max_items=8, max_body_bytes=20_000, batch_wait_ms=40))
    yield url
    stop()


def item(i: int) -> dict:
    return {"id": f"r{i}", "config": CONFIGS[i % 3], "prompt": PROMPTS[(i // 3) % 3], "response": RESPONSES[i % 4]}


def test_concurrent_requests_are_batched_and_match_the_library(server, decoder_scorer):
    async def fire() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server, timeout=60) as client:
            return await asyncio.gather(*(client.post("/score", json={"items": [item(i), item(i + 16)]})
                                          for i in range(16)))

    before = httpx.get(f"{server}/health").json()
    responses = asyncio.run(fire())
    after = httpx.get(f"{server}/health").json()
    assert all(r.status_code == 200 for r in responses)
    for i, response in enumerate(responses):
        results = response.json()["results"]
        assert [r["id"] for r in results] == [f"r{i}", f"r{i + 16}"]
        for body, got in zip((item(i), item(i + 16)), results, strict=True):
            expected = decoder_scorer.score(body["config"], body["prompt"], body["response"])
            assert got["p_comply"] == pytest.approx(expected.p_comply, abs=1e-5)
            assert got["reward"] == pytest.approx(expected.reward, abs=1e-5)
            assert got["complies"] == expected.complies and got["threshold"] == expected.threshold
    assert after["requests"] - before["requests"] == 16 and after["items"] - before["items"] == 32
    assert after["batches"] - before["batches"] < 16  # requests shared forward batches
    assert after["max_requests_per_batch"] > 1


def test_rank_orders_like_the_library(server, decoder_scorer):
    body = {"config": CONFIGS[1], "messages": [{"role": "user", "content": PROMPTS[1]}],
            "responses": [r for r in RESPONSES if r]}
    ranking = httpx.post(f"{server}/rank", json=body).json()["ranking"]
    expected = decoder_scorer.score_responses(CONFIGS[1], PROMPTS[1], body["responses"])
    assert [r["index"] for r in ranking] == [r.index for r in expected]
    assert [r["rank"] for r in ranking] == list(range(len(expected)))
    assert ranking[0]["reward"] == pytest.approx(expected[0].result.reward, abs=1e-5)


def test_structured_config_and_health(server, decoder_scorer):
    config = {"name": "violence", "allow": {"Violence": 2}}
    got = httpx.post(f"{server}/score", json={"items": [{"config": config, "prompt": PROMPTS[1]}]}).json()
    from csrm.base.safety_config import SafetyConfig

    expected = decoder_scorer.score(SafetyConfig.from_dict(config), PROMPTS[1])
    assert got["results"][0]["p_comply"] == pytest.approx(expected.p_comply, abs=1e-5)
    health = httpx.get(f"{server}/health").json()
    assert health["status"] == "ok" and health["prefix_cache"] is True


@pytest.mark.parametrize(("body", "status", "loc"), [
    ({"items": [{"prompt": "p"}]}, 422, ["body", "items", 0, "config"]),
    ({"items": [{"config": "c", "prompt": "p", "response": 5}]}, 422, ["body", "items", 0, "response"]),
    ({"items": [{"config": "c", "messages": [{"role": "bot", "content": "x"}]}]}, 422,
     ["body", "items", 0, "messages", 0, "role"]),
    ({"items": [{"config": "c", "prompt": "p", "colour": 1}]}, 422, ["body", "items", 0, "colour"]),
    ({"items": []}, 422, ["body", "items"]),
    ({"items": [{"config": "c", "prompt": "p"}, {"config": "c"}]}, 400, ["body", "items", 1, "prompt"]),
    ({"items": [{"config": "c", "prompt": "p", "messages": [{"role": "user", "content": "x"}]}]}, 400,
     ["body", "items", 0, "prompt"]),
    ({"items": [{"config": {"allow": {"Violence": 9}}, "prompt": "p"}]}, 400,
     ["body", "items", 0, "config", "allow", "Violence"]),
    ({"items": [{"config": "c", "prompt": "p"}] * 9}, 413, ["body", "items"]),
])
def test_bad_bodies_get_4xx_naming_the_field(server, body, status, loc):
    response = httpx.post(f"{server}/score", json=body)
    assert response.status_code == status, response.text
    assert any(d["loc"][: len(loc)] == loc for d in response.json()["detail"]), response.text


def test_rank_and_size_limits(server):
    too_many = {"config": "c", "prompt": "p", "responses": ["r"] * 9}
    response = httpx.post(f"{server}/rank", json=too_many)
    assert response.status_code == 413 and response.json()["detail"][0]["loc"] == ["body", "responses"]
    huge = {"items": [{"config": "c" * 30_000, "prompt": "p"}]}
    response = httpx.post(f"{server}/score", json=huge)
    assert response.status_code == 413 and response.json()["detail"][0]["loc"] == ["body"]

    def chunks():  # no Content-Length: the limit is counted on the stream
        for _ in range(30):
            yield b" " * 1000

    response = httpx.post(f"{server}/score", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    response = httpx.post(f"{server}/score", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422 and response.json()["detail"][0]["loc"][0] == "body"


def test_serve_command_loads_the_model_and_runs_uvicorn(tmp_path, monkeypatch):
    from fastapi.testclient import TestClient
    from scoring_fixtures import save, tiny_encoder

    import csrm.app.serve

    path = save(*tiny_encoder(), tmp_path / "model")
    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app, **kw))
    assert csrm.app.serve.main([str(path), "--host", "127.0.0.1", "--port", "8123", "--max-items", "3"]) == 0
    assert (seen["host"], seen["port"]) == ("127.0.0.1", 8123)
    with TestClient(seen["app"]) as client:
        assert client.get("/health").json()["max_items"] == 3
        body = {"items": [{"config": "c", "prompt": "p"}] * 4}
        assert client.post("/score", json=body).status_code == 413
        body["items"] = body["items"][:3]
        assert len(client.post("/score", json=body).json()["results"]) == 3
