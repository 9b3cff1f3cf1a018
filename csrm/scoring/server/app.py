"""The FastAPI app of ``csrm serve`` (:func:`create_app`) and its auth and body-limit middleware.

Endpoints:

- ``POST /score`` ``{"items": [{"id"?, "config", "prompt" | "messages", "response"?}, ...]}`` ->
  ``{"results": [{"id", "p_comply", "p_violation", "reward", "complies", "threshold", "evidence"?}, ...]}``
  (``evidence``: the rule and turn that drove the verdict, from scorers that name one);
- ``POST /rank`` ``{"config", "prompt" | "messages", "responses": [...]}`` -> ``{"ranking": [...]}`` best
  first (:mod:`csrm.scoring.ranking`);
- ``POST /get_reward`` ``{"query": [str, ...], "prompts"?: [...]}`` -> ``{"rewards": [float, ...]}``: OpenRLHF's
  remote reward protocol; the safety config comes only from each query's *leading* system message(s), else
  ``--default-config``; role tags inside the response are response text (:mod:`csrm.scoring.openrlhf`);
- ``GET /health`` -> status, model name (never a filesystem path), device and batching counters;
- ``/docs`` and ``/openapi.json`` only with ``docs=True`` (Swagger UI loads its script and style from a CDN,
  which a serving machine may not reach, and an API description need not be public).

``config`` is a string or ``{"name", "text", "allow", "deny"}``.

**One path for every endpoint.** Each request is validated by :mod:`csrm.base.validation` (the path the library
and ``csrm score`` use: unknown fields, unknown or never-allowed categories, lone surrogates anywhere) *before*
it joins a batch, then goes through the same :meth:`Batcher.submit <csrm.scoring.server.batching.Batcher.submit>`
with the same timeout and the same errors. **Limits and errors**: a body over ``max_body_bytes`` gets 413, one
not received within ``body_timeout_s`` 408, one that is not UTF-8 or nests deeper than 32 levels 400, more than
``max_items`` items (or responses, or queries) 413, a schema error 422 and a semantic one 400. A request that
cannot be scored within ``request_timeout_s`` at the measured throughput is refused at once with 503 and a
``Retry-After`` (:mod:`csrm.scoring.server.batching`); one admitted but not answered in time also gets 503 (its
work is dropped). Every error body is ``{"detail": [{"loc": [...], "msg": ..., "type": ...}]}`` with ``loc``
naming the field (e.g. ``["body", "items", 2, "prompt"]``, ``["body", "query", 0]``).

**Auth** (optional): with a token (``--token-file`` or ``--token-env``; never on the command line, where
``ps`` shows it) every endpoint but ``/health`` needs ``Authorization: Bearer <token>``, compared in constant
time (:func:`hmac.compare_digest`); anything else gets 401 before its body is read.
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
from starlette.exceptions import HTTPException as StarletteHTTPException

from csrm.base.errors import InputError
from csrm.base.safety_config import SafetyConfig
from csrm.base.score_types import ScoreItem, ScoreResult
from csrm.base.text import check_strings
from csrm.base.validation import default_taxonomy
from csrm.model.batching import DEFAULT_MAX_TOKENS
from csrm.scoring.ranking import estimated_error, rank
from csrm.scoring.server.batching import (
    BATCH_WAIT_MS,
    MAX_PENDING,
    REQUEST_TIMEOUT_S,
    Batcher,
    Busy,
    retry_seconds,
)
from csrm.scoring.server.schema import (
    GetRewardRequest,
    RankRequest,
    ScoreRequest,
    bad_field,
    field_loc,
    json_body_error,
    result_json,
    reward_items,
    schema_error,
    structured_http_error,
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
    for a body not received within ``timeout_s`` (a client trickling bytes cannot hold a connection open),
    400 for a JSON body that is not UTF-8 or nests too deep (:func:`~csrm.scoring.server.schema.json_body_error`)."""

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
        content_type = dict(scope["headers"]).get(b"content-type", b"")
        body_error = json_body_error(b"".join(chunks)) if size and (not content_type or b"json" in content_type) \
            else None
        if body_error is not None:
            await error_response(400, ["body"], *body_error)(scope, receive, send)
            return
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
               reward_output: str = "reward", docs: bool = False, warm_up: bool = True) -> FastAPI:
    """The FastAPI app serving ``scorer`` (a :class:`csrm.scoring.scorer.Scorer`); options as in the module doc.
    ``model_name`` is shown by ``/health``: give a name, not a path. ``default_config`` and ``reward_output``
    serve ``/get_reward`` (:mod:`csrm.scoring.openrlhf`). ``warm_up``: score one synthetic batch at startup to
    measure the throughput admission needs (:meth:`Batcher.warm_up`)."""
    batcher = Batcher(scorer, wait_s=batch_wait_ms / 1000, max_tokens=batch_tokens, max_pending=max_pending)
    taxonomy = getattr(scorer, "taxonomy", None) or default_taxonomy()
    if isinstance(default_config, SafetyConfig):
        default_config = default_config.to_dict()  # validated per item like a config sent in JSON

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if warm_up:
            await asyncio.get_running_loop().run_in_executor(batcher.executor, batcher.warm_up)
        worker = batcher.start()
        try:
            yield
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
            batcher.executor.shutdown(wait=False, cancel_futures=True)

    hidden = {} if docs else {"docs_url": None, "redoc_url": None, "openapi_url": None}
    app = FastAPI(title="CSRM", lifespan=lifespan, **hidden)
    app.add_exception_handler(RequestValidationError, schema_error)
    app.add_exception_handler(StarletteHTTPException, structured_http_error)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes, timeout_s=body_timeout_s)
    if auth_token is not None:
        app.add_middleware(BearerAuth, token=auth_token)  # added last = runs first: no body is read unauthenticated
    app.state.batcher = batcher

    def check_count(n: int, loc: str) -> None:
        if n > max_items:
            raise bad_field(413, [loc], f"{n} entries; at most {max_items} per request")

    async def score_items(items: list[ScoreItem], thresholds: list[float]) -> list[ScoreResult]:
        """The one way a request is scored: admission, batching, timeout and their errors (module doc)."""
        try:
            return await batcher.submit(items, thresholds, timeout=request_timeout_s)
        except Busy as err:
            raise HTTPException(503, detail=[{"loc": ["body"], "msg": f"server busy: {err}", "type": "busy"}],
                                headers={"Retry-After": str(retry_seconds(err.retry_after))}) from None
        except TimeoutError:
            drain = batcher.queued_cost() / batcher.rate if batcher.rate else 1.0
            raise HTTPException(503, detail=[{"loc": ["body"], "msg": f"not scored within {request_timeout_s:g} s",
                                              "type": "timeout"}],
                                headers={"Retry-After": str(retry_seconds(drain))}) from None
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
                "request_timeout": request_timeout_s, **batcher.stats}

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
        from csrm.scoring.reward_funcs import reward_value

        check_count(len(request.query), "query")
        pairs = reward_items(request, default_config, taxonomy)
        results = await score_items([p[0] for p in pairs], [scorer.threshold_for(p[1]) for p in pairs])
        rewards = [reward_value(r, reward_output) for r in results]
        return {"rewards": rewards, "scores": rewards,
                "extra_logs": {"p_comply": [r.p_comply for r in results], "complies": [r.complies for r in results]}}

    return app


def display_name(model: str) -> str:
    """What ``/health`` shows for ``model``: a local folder's last part, never its absolute path."""
    return Path(model).name if Path(model).exists() else model

