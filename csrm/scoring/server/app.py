"""``csrm serve MODEL``: a JSON API over HTTP (FastAPI + uvicorn) with dynamic batching.

Endpoints:

- ``POST /score`` ``{"items": [{"id"?, "config", "prompt" | "messages", "response"?}, ...]}`` ->
  ``{"results": [{"id", "p_comply", "p_violation", "reward", "complies", "threshold"}, ...]}``;
- ``POST /rank`` ``{"config", "prompt" | "messages", "responses": [...]}`` -> ``{"ranking": [...]}`` best
  first (:mod:`csrm.scoring.ranking`);
- ``POST /get_reward`` ``{"query": [str, ...], "prompts"?: [...]}`` -> ``{"rewards": [float, ...]}``: OpenRLHF's
  remote reward protocol; the safety config comes from each query's system message, else ``--default-config``
  (:mod:`csrm.scoring.openrlhf`);
- ``GET /health`` -> status, model name (never a filesystem path), device and batching counters.

``config`` is a string or ``{"name", "text", "allow", "deny"}``.

**Validation** is :mod:`csrm.base.validation`, the path the library and ``csrm score`` use: unknown fields, unknown
or never-allowed categories (checked against the model's taxonomy) and lone surrogates are 4xx naming the
field, found *before* a request joins a batch. **Limits and errors**: bodies over ``max_body_bytes`` get 413,
a body not received within ``body_timeout_s`` 408, more than ``max_items`` items (or responses) 413, a schema
error 422 and a semantic one 400; every error body is ``{"detail": [{"loc": [...], "msg": ...}]}`` with ``loc``
naming the field (e.g. ``["body", "items", 2, "prompt"]``). A request not answered within
``request_timeout_s`` gets 503 (its work is dropped), as does one arriving while more than ``max_pending``
items wait (``Retry-After: 1``).

**Auth** (optional): with a token (``--token-file`` or ``--token-env``; never on the command line, where
``ps`` shows it) every endpoint but ``/health`` needs ``Authorization: Bearer <token>``, compared in constant
time (:func:`hmac.compare_digest`); anything else gets 401 before its body is read.

**Batching and fairness**: requests join a list of active jobs; one worker builds each forward batch under
``batch_tokens`` (estimated tokens of the capped text, :mod:`csrm.base.text`) by taking items *round-robin* across
the active requests, then moves the requests it served to the back. So a small request shares the next batch
with a large one instead of waiting for all of it (a large request still progresses every batch). When idle,
the worker waits up to ``batch_wait_ms`` for more requests before the first batch. **Isolation**: if a batch
fails, each request in it is scored alone, so only the request at fault gets an error (400 for bad input,
500 otherwise) and the others get their results.
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from csrm.base.errors import InputError
from csrm.base.safety_config import SafetyConfig
from csrm.base.score_types import ScoreItem, ScoreResult
from csrm.base.text import check_strings
from csrm.base.validation import default_taxonomy
from csrm.model.batching import DEFAULT_MAX_TOKENS
from csrm.scoring.ranking import estimated_error, rank
from csrm.scoring.server.batching import BATCH_WAIT_MS, MAX_PENDING, REQUEST_TIMEOUT_S, Batcher, Busy
from csrm.scoring.server.schema import (
    GetRewardRequest,
    RankRequest,
    ScoreRequest,
    bad_field,
    field_loc,
    result_json,
    schema_error,
    to_item,
)

MAX_ITEMS = 256
MAX_BODY_BYTES = 2_000_000
BODY_TIMEOUT_S = 30.0


# -- body size -----------------------------------------------------------------------------------------
def error_response(status: int, loc: list[str], msg: str, kind: str, headers: dict[str, str] | None = None
                   ) -> JSONResponse:
    return JSONResponse({"detail": [{"loc": loc, "msg": msg, "type": kind}]}, status_code=status, headers=headers)


class BearerAuth:
    """ASGI middleware: ``Authorization: Bearer <token>`` on every path but ``open_paths`` (module doc)."""

    def __init__(self, app, token: str, open_paths: frozenset[str] = frozenset({"/health"})):
        self.app, self.token, self.open_paths = app, token.encode("utf-8"), open_paths

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        header = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value
        scheme, _, given = header.partition(b" ")
        # compare_digest takes time independent of where the strings differ (no timing oracle)
        if scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self.token):
            await self.app(scope, receive, send)
            return
        await error_response(401, ["header", "authorization"], "missing or wrong bearer token", "unauthorized",
                             {"WWW-Authenticate": "Bearer"})(scope, receive, send)


class BodyLimit:
    """ASGI middleware: 413 for bodies over ``max_bytes`` (by Content-Length or by counting the stream), 408
    for a body not received within ``timeout_s`` (a client trickling bytes cannot hold a connection open)."""

    def __init__(self, app, max_bytes: int = MAX_BODY_BYTES, timeout_s: float = BODY_TIMEOUT_S):
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = JSONResponse({"detail": [{"loc": ["body"], "msg": f"body larger than {self.max_bytes} bytes",
                                              "type": "too_large"}]}, status_code=413)
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            await too_large(scope, receive, send)
            return
        chunks, size, more = [], 0, True
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        while more:
            try:
                message = await asyncio.wait_for(receive(), deadline - asyncio.get_running_loop().time())
            except TimeoutError:
                await error_response(408, ["body"], f"body not received within {self.timeout_s:g} s",
                                     "timeout")(scope, receive, send)
                return
            if message["type"] != "http.request":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await too_large(scope, receive, send)
                return
            more = message.get("more_body", False)
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)


# -- app -----------------------------------------------------------------------------------------------
def create_app(scorer, *, max_items: int = MAX_ITEMS, max_body_bytes: int = MAX_BODY_BYTES,
               batch_wait_ms: float = BATCH_WAIT_MS, batch_tokens: int = DEFAULT_MAX_TOKENS,
               model_name: str = "", auth_token: str | None = None,
               request_timeout_s: float | None = REQUEST_TIMEOUT_S, body_timeout_s: float = BODY_TIMEOUT_S,
               max_pending: int = MAX_PENDING, default_config: str | SafetyConfig | None = None,
               reward_output: str = "reward") -> FastAPI:
    """The FastAPI app serving ``scorer`` (a :class:`csrm.scoring.scorer.CSRMScorer`); options as in the module doc.
    ``model_name`` is shown by ``/health``: give a name, not a path. ``default_config`` and ``reward_output``
    serve ``/get_reward`` (:mod:`csrm.scoring.openrlhf`)."""
    batcher = Batcher(scorer, wait_s=batch_wait_ms / 1000, max_tokens=batch_tokens, max_pending=max_pending)
    taxonomy = getattr(scorer, "taxonomy", None) or default_taxonomy()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        worker = batcher.start()
        try:
            yield
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
            batcher.executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="CSRM", lifespan=lifespan)
    app.add_exception_handler(RequestValidationError, schema_error)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes, timeout_s=body_timeout_s)
    if auth_token is not None:
        app.add_middleware(BearerAuth, token=auth_token)  # added last = runs first: no body is read unauthenticated
    app.state.batcher = batcher

    def check_count(n: int, loc: str) -> None:
        if n > max_items:
            raise bad_field(413, [loc], f"{n} entries; at most {max_items} per request")

    async def score_items(items: list[ScoreItem], thresholds: list[float]) -> list[ScoreResult]:
        try:
            return await batcher.submit(items, thresholds, timeout=request_timeout_s)
        except Busy as err:
            raise HTTPException(503, detail=[{"loc": ["body"], "msg": f"server busy: {err}", "type": "busy"}],
                                headers={"Retry-After": "1"}) from None
        except TimeoutError:
            raise HTTPException(503, detail=[{"loc": ["body"], "msg": f"not scored within {request_timeout_s:g} s",
                                              "type": "timeout"}], headers={"Retry-After": "1"}) from None
        except InputError as err:  # validation runs before batching, so this is a scorer-side check
            raise bad_field(400, [], err.reason) from None
        except Exception as err:  # noqa: BLE001 - only this request fails (Batcher isolates it)
            raise HTTPException(500, detail=[{"loc": ["body"], "msg": f"scoring failed ({type(err).__name__})",
                                              "type": "internal"}]) from None

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": model_name, "device": str(getattr(scorer, "device", "")),
                "prefix_cache": bool(getattr(scorer, "prefix_cache", False)), "queue": batcher.pending,
                "max_items": max_items, "max_body_bytes": max_body_bytes, "auth": auth_token is not None,
                **batcher.stats}

    @app.post("/score")
    async def score(request: ScoreRequest) -> dict[str, Any]:
        check_count(len(request.items), "items")
        pairs = [to_item(e, e.response, ["items", i], taxonomy) for i, e in enumerate(request.items)]
        results = await score_items([p[0] for p in pairs], [scorer.threshold_for(p[1]) for p in pairs])
        return {"results": [{"id": None if e.id is None else str(e.id), **result_json(r)}
                            for e, r in zip(request.items, results, strict=True)]}

    @app.post("/rank")
    async def rank_responses(request: RankRequest) -> dict[str, Any]:
        check_count(len(request.responses), "responses")
        first, config = to_item(request, None, [], taxonomy)
        for i, response in enumerate(request.responses):
            try:
                check_strings(response, f"responses.{i}")
            except InputError as err:
                raise bad_field(400, field_loc(err.field), err.reason) from None
        items = [ScoreItem(first.config, first.messages, r) for r in request.responses]
        results = await score_items(items, [scorer.threshold_for(config)] * len(items))
        return {"ranking": [{"rank": position, "index": i, **result_json(results[i]),
                             "error": estimated_error(results[i])} for position, i in enumerate(rank(results))]}

    @app.post("/get_reward")
    async def get_reward(request: GetRewardRequest) -> dict[str, Any]:
        from csrm.scoring.openrlhf import QueryError, get_reward_body
        from csrm.scoring.reward_funcs import reward_value

        check_count(len(request.query), "query")
        try:
            parsed = get_reward_body(request.query, request.prompts, default_config)
        except QueryError as err:
            raise bad_field(400, list(err.loc), err.reason) from None
        items = [ScoreItem(scorer.render(c), m, r) for c, m, r in parsed]
        results = await batcher.submit(items, [scorer.threshold_for(c) for c, _, _ in parsed])
        rewards = [reward_value(r, reward_output) for r in results]
        return {"rewards": rewards, "scores": rewards,
                "extra_logs": {"p_comply": [r.p_comply for r in results], "complies": [r.complies for r in results]}}

    return app

def display_name(model: str) -> str:
    """What ``/health`` shows for ``model``: a local folder's last part, never its absolute path."""
    return Path(model).name if Path(model).exists() else model

