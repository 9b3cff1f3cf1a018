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
import collections
import contextlib
import hmac
import logging
import os
import stat
import sys
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from csrm.base.config import at_least, dump, load_command, setting
from csrm.base.errors import InputError
from csrm.base.safety_config import SafetyConfig
from csrm.base.score_types import ScoreItem, ScoreResult
from csrm.base.text import cap_item, check_strings, find_lone_surrogate, surrogate_message
from csrm.base.validation import default_taxonomy, parse_item
from csrm.model.batching import DEFAULT_MAX_TOKENS
from csrm.scoring.ranking import estimated_error, rank
from csrm.scoring.reward_funcs import RewardOutput

logger = logging.getLogger(__name__)

MAX_ITEMS = 256
MAX_BODY_BYTES = 2_000_000
BATCH_WAIT_MS = 5.0
REQUEST_TIMEOUT_S = 120.0
BODY_TIMEOUT_S = 30.0
MAX_PENDING = 4096
NonEmpty = Annotated[str, Field(min_length=1)]


# -- request schema ------------------------------------------------------------------------------------
class MessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: str


class ConfigIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = ""
    text: str = ""
    allow: dict[str, int | bool] | list[str] | None = None
    deny: list[str] | None = None


class Conversation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    config: NonEmpty | ConfigIn
    prompt: NonEmpty | None = None
    messages: list[MessageIn] | None = None


class ItemIn(Conversation):
    id: str | int | None = None
    response: str | None = None


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[ItemIn] = Field(min_length=1)


class RankRequest(Conversation):
    responses: list[str] = Field(min_length=1)


class GetRewardRequest(BaseModel):
    """OpenRLHF's body; other keys its versions and forks send (``labels``, ``metadata``, ...) are ignored."""

    model_config = ConfigDict(extra="ignore")
    query: list[str] = Field(min_length=1)
    prompts: list[str] | None = None


def bad_field(status: int, loc: list[str | int], msg: str) -> HTTPException:
    return HTTPException(status, detail=[{"loc": ["body", *loc], "msg": msg, "type": "value_error"}])


def field_loc(field: str | None) -> list[str | int]:
    """``"messages.1.content"`` -> ``["messages", 1, "content"]`` (the dotted field of an InputError)."""
    if not field:
        return []
    return [int(part) if part.isdigit() else part for part in field.split(".")]


def to_item(entry: Conversation, response: str | None, loc: list[str | int], taxonomy
            ) -> tuple[ScoreItem, str | SafetyConfig]:
    """Validated :class:`ScoreItem` and the config as given (:func:`csrm.base.validation.parse_item`); 400
    naming the field otherwise."""
    if (entry.prompt is None) == (entry.messages is None):
        raise bad_field(400, [*loc, "prompt"], "give exactly one of 'prompt' or 'messages'")
    if entry.messages is not None and not entry.messages:
        raise bad_field(400, [*loc, "messages"], "empty conversation")
    obj: dict[str, Any] = {"config": entry.config if isinstance(entry.config, str)
                           else entry.config.model_dump(exclude_none=True)}
    if entry.prompt is not None:
        obj["prompt"] = entry.prompt
    else:
        obj["messages"] = [m.model_dump() for m in entry.messages or []]
    if response is not None:
        obj["response"] = response
    item_id = getattr(entry, "id", None)
    if item_id is not None:
        obj["id"] = item_id
    try:
        parsed = parse_item(obj, taxonomy, require_id=False)
    except InputError as err:
        raise bad_field(400, [*loc, *field_loc(err.field)], err.reason) from None
    return parsed.item, parsed.config


async def schema_error(_request, exc: RequestValidationError) -> JSONResponse:
    """422 for schema errors, without echoing the input (FastAPI's default does: a 2 MB field would come back,
    and a lone surrogate in it made the error response itself fail with 500). Text that is not valid Unicode
    is 400 with the message the library and ``csrm score`` give (:mod:`csrm.base.text`)."""
    detail, status = [], 422
    for error in exc.errors():
        entry = {"loc": list(error.get("loc", ())), "msg": str(error.get("msg", "")), "type": error.get("type", "")}
        value = error.get("input")
        index = find_lone_surrogate(value) if isinstance(value, str) else None
        if error.get("type") == "string_unicode" and index is not None:
            entry.update(msg=surrogate_message(value, index), type="value_error")
            status = 400
        detail.append(entry)
    return JSONResponse({"detail": detail}, status_code=status)


def result_json(result: ScoreResult) -> dict[str, Any]:
    return {"p_comply": result.p_comply, "p_violation": result.p_violation, "reward": result.reward,
            "complies": result.complies, "threshold": result.threshold}


# -- dynamic batching ----------------------------------------------------------------------------------
class Busy(Exception):
    """Too many items are waiting: the request is refused (503) rather than queued without bound."""


@dataclass(eq=False)
class _Job:
    items: list[ScoreItem]
    thresholds: list[float]
    costs: list[int]
    future: asyncio.Future
    next: int = 0  # first item not yet handed to a batch
    results: list[ScoreResult | None] = field(default_factory=list)
    finished: int = 0

    @property
    def remaining(self) -> int:
        return len(self.items) - self.next


def estimate_tokens(item: ScoreItem, cap: int | None = None, max_length: int | None = None) -> int:
    """Rough token count of an item (characters / 4 of its capped text), at most ``max_length``."""
    if cap is not None:
        item = cap_item(item, cap)
    chars = len(item.config) + sum(len(m["content"]) for m in item.messages) + len(item.response or "")
    tokens = chars // 4 + 1
    return min(tokens, max_length) if max_length else tokens


@dataclass
class Batcher:
    """Gathers concurrent requests into scorer calls, round-robin across requests (module doc)."""

    scorer: Any
    wait_s: float = BATCH_WAIT_MS / 1000
    max_tokens: int = DEFAULT_MAX_TOKENS
    max_pending: int = MAX_PENDING
    stats: dict[str, int] = field(default_factory=lambda: {"requests": 0, "batches": 0, "items": 0,
                                                            "max_requests_per_batch": 0, "failed_requests": 0,
                                                            "isolated_batches": 0, "timeouts": 0, "busy": 0})

    def __post_init__(self) -> None:
        self.active: collections.deque[_Job] = collections.deque()
        self.wakeup = asyncio.Event()  # re-made on the serving loop by start()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="csrm-score")
        self.cap = getattr(self.scorer, "char_cap", None)
        model_config = getattr(getattr(self.scorer, "model", None), "config", None)
        self.max_length = getattr(model_config, "max_length", None)

    def start(self) -> asyncio.Task:
        """Start the worker on the running loop."""
        self.wakeup = asyncio.Event()
        return asyncio.create_task(self.run())

    @property
    def pending(self) -> int:
        """Items accepted and not yet handed to a batch."""
        return sum(job.remaining for job in self.active if not job.future.done())

    async def submit(self, items: list[ScoreItem], thresholds: list[float], timeout: float | None = None
                     ) -> list[ScoreResult]:
        """Results of ``items`` in order. Raises :class:`Busy` when ``max_pending`` items already wait and
        :class:`TimeoutError` after ``timeout`` seconds (the job is dropped)."""
        if self.pending + len(items) > self.max_pending:
            self.stats["busy"] += 1
            raise Busy(f"{self.pending} items are waiting; at most {self.max_pending}")
        costs = [estimate_tokens(i, self.cap, self.max_length) for i in items]
        job = _Job(items, thresholds, costs, asyncio.get_running_loop().create_future(),
                   results=[None] * len(items))
        self.active.append(job)
        self.stats["requests"] += 1
        self.wakeup.set()
        try:
            return await asyncio.wait_for(job.future, timeout)
        except TimeoutError:
            self.stats["timeouts"] += 1
            raise

    def _pick(self) -> list[tuple[_Job, int, int]]:
        """One batch: items round-robin across active jobs under ``max_tokens`` (at least one item)."""
        live = [job for job in self.active if not job.future.done() and job.remaining]
        taken = {id(job): 0 for job in live}
        cost, progress = 0, True
        while progress:
            progress = False
            for job in live:
                index = job.next + taken[id(job)]
                if index >= len(job.items):
                    continue
                if cost and cost + job.costs[index] > self.max_tokens:
                    progress = False
                    break
                taken[id(job)] += 1
                cost += job.costs[index]
                progress = True
        picks = []
        for job in live:
            if taken[id(job)]:
                picks.append((job, job.next, job.next + taken[id(job)]))
                job.next += taken[id(job)]
        served = {id(job) for job, _, _ in picks}
        # requests served in this batch go to the back: the next batch starts with the ones left out
        self.active = collections.deque([j for j in self.active if id(j) not in served and not j.future.done()
                                         and j.remaining] + [j for j, _, _ in picks if j.remaining])
        return picks

    async def _score(self, picks: list[tuple[_Job, int, int]]) -> None:
        loop = asyncio.get_running_loop()
        items = [i for job, a, b in picks for i in job.items[a:b]]
        thresholds = [t for job, a, b in picks for t in job.thresholds[a:b]]
        try:
            results = await loop.run_in_executor(self.executor, self.scorer.score_items, items, thresholds)
        except Exception as err:  # noqa: BLE001 - find the request at fault: score each one alone
            if len(picks) == 1:
                self._fail(picks[0][0], err)
                return
            self.stats["isolated_batches"] += 1
            for pick in picks:
                await self._score([pick])
            return
        start = 0
        for job, a, b in picks:
            if not job.future.done():
                job.results[a:b] = results[start:start + b - a]
                job.finished += b - a
                if job.finished == len(job.items):
                    job.future.set_result(job.results)
            start += b - a

    def _fail(self, job: _Job, err: Exception) -> None:
        logger.warning("scoring a request failed: %s: %s", type(err).__name__, err)
        self.stats["failed_requests"] += 1
        job.next = len(job.items)  # nothing more of it is scheduled
        if not job.future.done():
            job.future.set_exception(err)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not any(not job.future.done() and job.remaining for job in self.active):
                self.active.clear()
                self.wakeup.clear()
                await self.wakeup.wait()
                deadline = loop.time() + self.wait_s  # idle until now: let concurrent requests arrive
                while loop.time() < deadline and sum(
                        sum(j.costs[j.next:]) for j in self.active if not j.future.done()) < self.max_tokens:
                    self.wakeup.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.wakeup.wait(), deadline - loop.time())
            picks = self._pick()
            if not picks:
                continue
            self.stats["batches"] += 1
            self.stats["items"] += sum(b - a for _, a, b in picks)
            self.stats["max_requests_per_batch"] = max(self.stats["max_requests_per_batch"], len(picks))
            await self._score(picks)


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
    """The FastAPI app serving ``scorer`` (a :class:`csrm.scoring.scorer.Scorer`); options as in the module doc.
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


def read_token(token_file: str | None, token_env: str | None) -> str | None:
    """The bearer token from a file or an environment variable (``None``: auth off); surrounding whitespace
    is dropped. Refused: both given, a missing or empty source. A token file others can read is warned about."""
    if token_file and token_env:
        raise InputError("give --token-file or --token-env, not both", field="--token-file")
    if token_file:
        path = Path(token_file)
        from csrm.base.io import read_text

        token = read_text(path).strip()
        if not token:
            raise InputError("empty token file", path=token_file, field="--token-file")
        if path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH):
            logger.warning("token file %s is readable by other users (chmod 600 it)", token_file)
    elif token_env:
        token = os.environ.get(token_env, "").strip()
        if not token:
            raise InputError(f"environment variable {token_env} is not set or empty", field="--token-env")
    else:
        return None
    if len(token) < 16:
        logger.warning("the bearer token is short (%d characters); use 16 or more random characters", len(token))
    return token


def display_name(model: str) -> str:
    """What ``/health`` shows for ``model``: a local folder's last part, never its absolute path."""
    return Path(model).name if Path(model).exists() else model


@dataclass
class ServeConfig:
    """Settings of ``csrm serve`` (:func:`csrm.base.config.load_command`; MODEL is positional)."""

    model: str = setting(help="trained CSRM folder or hub id")
    host: str = setting("127.0.0.1", "address to listen on")
    port: int = setting(8000, "port to listen on")
    max_items: int = setting(MAX_ITEMS, "max items or responses per request", check=at_least(1))
    max_body_bytes: int = setting(MAX_BODY_BYTES, "max request body size in bytes", check=at_least(1))
    batch_wait_ms: float = setting(BATCH_WAIT_MS, "how long the idle batcher waits for more requests")
    batch_tokens: int | None = setting(None, "token budget per gathered batch (default 8192) and per forward "
                                       "batch (default 8192 on GPU, 2048 on CPU)", check=at_least(1))
    token_file: str | None = setting(None, "require 'Authorization: Bearer <token>' with the token read from "
                                     "this file")
    token_env: str | None = setting(None, "require a bearer token read from this environment variable")
    request_timeout: float = setting(REQUEST_TIMEOUT_S, "seconds a request may wait and be scored before it gets "
                                     "503 (0 = no limit)")
    body_timeout: float = setting(BODY_TIMEOUT_S, "seconds a client has to send its request body before it "
                                  "gets 408")
    max_pending: int = setting(MAX_PENDING, "items that may wait to be scored; requests beyond get 503",
                               check=at_least(1))
    device: str | None = setting(None, "cpu, cuda, cuda:1 ... (default: cuda if available)")
    threads: int | None = setting(None, "torch intra-op threads", check=at_least(1))
    bf16: bool | None = setting(None, "bf16 autocast (default: on for CUDA with bf16, off on CPU)")
    default_config: str | None = setting(None, "/get_reward: safety config for queries without a system message: "
                                         "a file (.yaml/.json/.txt, csrm.SafetyConfig) or the policy text itself")
    reward_output: RewardOutput = setting("reward", "/get_reward: the number returned: reward head, "
                                              "p_comply, or neg_error (compliant responses always above "
                                              "violating ones)")
    log_level: str = setting("info", "uvicorn log level")


def default_config_arg(value: str | None) -> str | SafetyConfig | None:
    """``--default-config``: a config file if one exists at that path, else the policy text as given."""
    if value is None or not value.strip():
        return None
    from pathlib import Path

    path = Path(value)
    return SafetyConfig.from_file(path) if len(value) < 4096 and path.is_file() else value


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    from csrm.scoring.scorer import load

    cfg, print_config = load_command(ServeConfig, "csrm serve", "serve a CSRM over HTTP (score, rank, health)",
                                     sys.argv[1:] if argv is None else argv)
    if print_config:
        print(dump(cfg), end="")
        return 0
    token = read_token(cfg.token_file, cfg.token_env)  # before the model loads: a bad token source fails fast
    default_config = default_config_arg(cfg.default_config)  # a bad file fails before the model loads
    scorer = load(cfg.model, device=cfg.device, max_tokens=cfg.batch_tokens, bf16=cfg.bf16,
                  num_threads=cfg.threads)
    app = create_app(scorer, max_items=cfg.max_items, max_body_bytes=cfg.max_body_bytes,
                     batch_wait_ms=cfg.batch_wait_ms, batch_tokens=cfg.batch_tokens or DEFAULT_MAX_TOKENS,
                     model_name=display_name(cfg.model), auth_token=token,
                     request_timeout_s=cfg.request_timeout or None, body_timeout_s=cfg.body_timeout,
                     max_pending=cfg.max_pending, default_config=default_config,
                     reward_output=cfg.reward_output)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level=cfg.log_level)
    return 0
