"""Serving under load: concurrent clients on 127.0.0.1 mixing valid, invalid and oversized requests.

    python bench/bench_serve_load.py [--clients 8] [--requests 50] [--threads 1] [--tiny]

A real uvicorn server (:func:`csrm.scoring.server.create_app`, bearer auth on) serves a MiniLM CSRM (random heads, as
in the other benchmarks; ``--tiny``: a 2-layer random BERT, for smoke runs). Each client sends ``--requests``
requests one after another, drawn deterministically per client:

- ``valid`` (60%): 1-4 items from the seed corpus (:func:`common.scoring_items`);
- ``large`` (10%): one valid item whose response is ~1.5 MB (under the body limit: it is capped to
  ``max_length * 32`` characters at each end before tokenizing, :mod:`csrm.base.text`);
- ``invalid`` (25%): a lone surrogate, a never-allowed category, an unknown category beside text, a
  misspelled field, or a missing token;
- ``oversized`` (5%): a body over ``--max-body-bytes``.

Afterwards every valid answer is compared with the library (:meth:`Scorer.score_batch` on the same items)
and every other request must have got its expected status (400/401/413/422). An *error* is any other status
(a 5xx above all) or a wrong answer. Reported: requests per kind, errors, latency p50/p99 of the valid
requests, of the small ones among them (1 item, sent while large requests were in flight too) and of all.
The ratio line is the share of valid requests answered correctly (target 1.0).
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

TOKEN = "bench-token-0123456789abcdef"
KINDS = (("valid", 0.60), ("large", 0.10), ("invalid", 0.25), ("oversized", 0.05))
INVALID = {  # name -> (item changes, expected status)
    "surrogate": ({"response": "x\ud800y"}, 400),
    "other_harms": ({"config": {"allow": {"Other Harms": True}}}, 400),
    "unknown_category": ({"config": {"text": "Fiction is fine.", "allow": {"Violance": 2}}}, 400),
    "misspelled_field": ({"respnse": "r"}, 422),
    "no_token": ({}, 401),
}


def build_scorer(tiny: bool, max_length: int):
    import torch
    from transformers import BertConfig

    from csrm.model.cross_encoder.modeling import CSRMModel, load_tokenizer
    from csrm.scoring.scorer import Scorer

    tokenizer = load_tokenizer("minilm", decoder=False)
    if tiny:
        config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=4, max_position_embeddings=512)
        torch.manual_seed(0)
        model = CSRMModel.from_backbone_config(config, max_length=max_length)
    else:
        from bench_scoring import build_model

        model, tokenizer = build_model(max_length, random_init=False)
    with torch.no_grad():
        for head in (model.compliance_head, model.reward_head):
            head.weight.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(1))
    return Scorer(model.eval(), tokenizer, device="cpu")


def item_json(item, item_id: str) -> dict[str, Any]:
    return {"id": item_id, "config": item.config, "messages": item.messages, "response": item.response}


def plan(clients: int, requests: int, pool: list, max_body: int) -> list[list[dict[str, Any]]]:
    """Per client, its requests: ``{"kind", "body" (bytes), "headers", "expect", "items"}`` (deterministic)."""
    out = []
    kinds, weights = zip(*KINDS, strict=True)
    for client in range(clients):
        rng = random.Random(client)
        requests_of_client = []
        for r in range(requests):
            kind = rng.choices(kinds, weights)[0]
            items = [rng.choice(pool) for _ in range(rng.randint(1, 4) if kind == "valid" else 1)]
            body: dict[str, Any] = {"items": [item_json(it, f"c{client}-r{r}-{k}") for k, it in enumerate(items)]}
            headers = {"content-type": "application/json", "authorization": f"Bearer {TOKEN}"}
            expect, name = 200, kind
            if kind == "large":
                text = "The knight lifts the sword and the crowd cheers. "
                items[0] = type(items[0])(items[0].config, items[0].messages, text * (1_500_000 // len(text)))
                body["items"][0] = item_json(items[0], f"c{client}-r{r}-0")
            elif kind == "invalid":
                name = rng.choice(sorted(INVALID))
                changes, expect = INVALID[name]
                body["items"][0].update(changes)
                if name == "no_token":
                    del headers["authorization"]
            elif kind == "oversized":
                body["items"][0]["response"] = "x" * (max_body + 1000)
                expect = 413
            requests_of_client.append({"kind": kind, "name": name, "expect": expect, "headers": headers,
                                       "body": json.dumps(body).encode("utf-8"),
                                       "items": items if expect == 200 else []})
        out.append(requests_of_client)
    return out


def start_server(scorer, max_body: int, batch_tokens: int):
    import uvicorn

    from csrm.scoring.server import create_app

    app = create_app(scorer, max_body_bytes=max_body, batch_tokens=batch_tokens, auth_token=TOKEN,
                     model_name="bench")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not server.started and time.time() < deadline:
        time.sleep(0.02)
    if not server.started:
        raise RuntimeError("uvicorn did not start")
    return server, thread, f"http://127.0.0.1:{port}"


async def drive(url: str, plans: list[list[dict[str, Any]]], timeout: float) -> list[dict[str, Any]]:
    import httpx

    large_in_flight = 0
    records: list[dict[str, Any]] = []

    async def client(requests: list[dict[str, Any]]) -> None:
        nonlocal large_in_flight
        async with httpx.AsyncClient(base_url=url, timeout=timeout) as http:
            for request in requests:
                start = time.perf_counter()
                during_large = large_in_flight > 0
                large_in_flight += request["kind"] == "large"
                try:
                    response = await http.post("/score", content=request["body"], headers=request["headers"])
                    status, payload = response.status_code, response.json()
                except (httpx.HTTPError, ValueError) as err:
                    status, payload = -1, {"error": f"{type(err).__name__}: {err}"}
                finally:
                    large_in_flight -= request["kind"] == "large"
                records.append({**request, "status": status, "payload": payload, "during_large": during_large,
                                "seconds": time.perf_counter() - start})

    await asyncio.gather(*(client(p) for p in plans))
    return records


def check(records: list[dict[str, Any]], scorer, tolerance: float) -> list[str]:
    """The errors: unexpected statuses and valid answers that differ from the library."""
    errors = []
    for r in records:
        if r["status"] != r["expect"]:
            errors.append(f"{r['kind']}/{r['name']}: status {r['status']}, expected {r['expect']}: "
                          f"{str(r['payload'])[:200]}")
            continue
        if r["expect"] != 200:
            continue
        items = r["items"]
        expected = scorer.score_batch([i.config for i in items], [i.messages for i in items],
                                      [i.response for i in items])
        got = r["payload"]["results"]
        for e, g in zip(expected, got, strict=True):
            if abs(e.p_comply - g["p_comply"]) > tolerance or e.complies != g["complies"]:
                errors.append(f"{r['kind']}: p_comply {g['p_comply']} vs library {e.p_comply}")
    return errors


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)  # nearest rank
    return ordered[min(len(ordered), max(1, math.ceil(q / 100 * len(ordered)))) - 1]


def run_load(*, clients: int, requests: int, tiny: bool = False, max_length: int = 256, threads: int = 1,
             max_body: int = 2_000_000, batch_tokens: int = 8192, timeout: float = 120,
             tolerance: float = 1e-5) -> dict[str, Any]:
    """Start a server, drive it, check every answer; returns the figures (module doc)."""
    common.set_threads(threads)
    scorer = build_scorer(tiny, max_length)
    pool = common.scoring_items(64, seed=3)
    plans = plan(clients, requests, pool, max_body)
    server, thread, url = start_server(scorer, max_body, batch_tokens)
    try:
        start = time.perf_counter()
        records = asyncio.run(drive(url, plans, timeout))
        wall = time.perf_counter() - start
        import httpx

        health = httpx.get(f"{url}/health", timeout=30).json()
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    errors = check(records, scorer, tolerance)
    valid = [r for r in records if r["expect"] == 200]
    small = [r["seconds"] for r in valid if r["kind"] == "valid" and len(r["items"]) == 1 and r["during_large"]]
    counts: dict[str, int] = {}
    for r in records:
        counts[r["kind"]] = counts.get(r["kind"], 0) + 1
    correct = sum(1 for r in valid if r["status"] == 200) - sum(1 for e in errors if "p_comply" in e)
    return {
        "clients": clients, "requests": len(records), "per_kind": counts, "errors": len(errors),
        "error_samples": errors[:10], "server_5xx": sum(1 for r in records if r["status"] >= 500),
        "valid_correct": correct, "valid": len(valid), "wall_seconds": round(wall, 2),
        "requests_per_second": round(len(records) / wall, 2),
        "latency_ms": {
            "valid_p50": round(1000 * percentile([r["seconds"] for r in valid], 50), 1),
            "valid_p99": round(1000 * percentile([r["seconds"] for r in valid], 99), 1),
            "small_during_large_p50": round(1000 * percentile(small, 50), 1),
            "small_during_large_p99": round(1000 * percentile(small, 99), 1),
            "small_during_large_n": len(small),
            "all_p50": round(1000 * percentile([r["seconds"] for r in records], 50), 1),
            "all_p99": round(1000 * percentile([r["seconds"] for r in records], 99), 1)},
        "server": {k: health.get(k) for k in ("batches", "items", "max_requests_per_batch", "failed_requests",
                                              "isolated_batches", "timeouts", "busy")},
        "settings": {"tiny": tiny, "max_length": max_length, "threads": threads, "max_body_bytes": max_body,
                     "batch_tokens": batch_tokens, "mix": dict(KINDS)},
    }


def main(argv: list[str] | None = None) -> dict:
    parser = common.base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=50, help="requests per client")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer random BERT instead of MiniLM")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--max-body-bytes", type=int, default=2_000_000)
    parser.add_argument("--batch-tokens", type=int, default=8192)
    args = parser.parse_args(argv)
    result = run_load(clients=args.clients, requests=args.requests, tiny=args.tiny, max_length=args.max_length,
                      threads=args.threads, max_body=args.max_body_bytes, batch_tokens=args.batch_tokens)
    latency = result["latency_ms"]
    print(common.table([{"clients": result["clients"], "requests": result["requests"],
                         **{k: result["per_kind"].get(k, 0) for k, _ in KINDS}, "errors": result["errors"],
                         "5xx": result["server_5xx"], "valid p50 ms": latency["valid_p50"],
                         "valid p99 ms": latency["valid_p99"], "small-during-large p99 ms":
                             latency["small_during_large_p99"], "req/s": result["requests_per_second"]}]))
    for sample in result["error_samples"]:
        print("  error:", sample)
    ratio = result["valid_correct"] / max(result["valid"], 1)
    result["ratio"] = float(ratio)
    common.write_results("serve_load", result, args.out, script=__file__, argv=argv)
    print(common.ratio_line("valid_answered_correctly", ratio, 1.0, unit=""))
    return result


if __name__ == "__main__":
    main()
