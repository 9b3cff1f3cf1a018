"""``csrm serve MODEL``: a JSON API over HTTP (FastAPI + uvicorn) with dynamic batching.

Endpoints:

- ``POST /score`` ``{"items": [{"id"?, "config", "prompt" | "messages", "response"?}, ...]}`` ->
  ``{"results": [{"id", "p_comply", "p_violation", "reward", "complies", "threshold"}, ...]}``;
- ``POST /rank`` ``{"config", "prompt" | "messages", "responses": [...]}`` -> ``{"ranking": [...]}`` best
  first (:mod:`csrm.ranking`);
- ``POST /get_reward`` ``{"query": [str, ...], "prompts"?: [...]}`` -> ``{"rewards": [float, ...]}``: OpenRLHF's
  remote reward protocol; the safety config comes from each query's system message, else ``--default-config``
  (:mod:`csrm.openrlhf`);
- ``GET /health`` -> status, model, device and batching counters.

``config`` is a string or ``{"name", "text", "allow", "deny"}``. **Batching**: requests go to an asyncio
queue; one worker takes the first, gathers more for up to ``batch_wait_ms`` or until ~``batch_tokens``
(estimated as characters / 4) and scores them all in one call on a worker thread, so the event loop keeps
accepting requests. **Limits and errors**: bodies over ``max_body_bytes`` get 413, more than ``max_items``
items (or responses) get 413, a schema error gets 422 and a semantic one 400; every error body is
``{"detail": [{"loc": [...], "msg": ...}]}`` with ``loc`` naming the field (e.g. ``["body", "items", 2,
"prompt"]``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from csrm.batching import DEFAULT_MAX_TOKENS
from csrm.errors import InputError
from csrm.ranking import estimated_error, rank
from csrm.reward_funcs import OUTPUTS
from csrm.safety_config import SafetyConfig
from csrm.score_types import ScoreItem, ScoreResult

logger = logging.getLogger(__name__)

MAX_ITEMS = 256
MAX_BODY_BYTES = 2_000_000
BATCH_WAIT_MS = 5.0
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


def to_item(entry: Conversation, response: str | None, loc: list[str | int], render
            ) -> tuple[ScoreItem, str | SafetyConfig]:
    """Validated :class:`ScoreItem` and the config as given; 400 naming the field otherwise."""
    if (entry.prompt is None) == (entry.messages is None):
        raise bad_field(400, [*loc, "prompt"], "give exactly one of 'prompt' or 'messages'")
    if entry.messages is not None and not entry.messages:
        raise bad_field(400, [*loc, "messages"], "empty conversation")
    config: str | SafetyConfig
    if isinstance(entry.config, str):
        config = entry.config
    else:
        try:
            config = SafetyConfig.from_dict(entry.config.model_dump(exclude_none=True))
        except InputError as err:
            raise bad_field(400, [*loc, "config", *(err.field or "text").split(".", 1)], err.reason) from None
    messages = ([{"role": "user", "content": entry.prompt}] if entry.prompt is not None
                else [m.model_dump() for m in entry.messages or []])
    return ScoreItem(render(config), messages, response), config


def result_json(result: ScoreResult) -> dict[str, Any]:
    return {"p_comply": result.p_comply, "p_violation": result.p_violation, "reward": result.reward,
            "complies": result.complies, "threshold": result.threshold}


# -- dynamic batching ----------------------------------------------------------------------------------
@dataclass
class _Job:
    items: list[ScoreItem]
    thresholds: list[float]
    future: asyncio.Future
    cost: int


@dataclass
class Batcher:
    """Gathers concurrent requests into one scorer call (module doc)."""

    scorer: Any
    wait_s: float = BATCH_WAIT_MS / 1000
    max_tokens: int = DEFAULT_MAX_TOKENS
    stats: dict[str, int] = field(default_factory=lambda: {"requests": 0, "batches": 0, "items": 0,
                                                            "max_requests_per_batch": 0})

    def __post_init__(self) -> None:
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()  # re-made on the serving loop by start()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="csrm-score")

    def start(self) -> asyncio.Task:
        """Start the worker on the running loop."""
        self.queue = asyncio.Queue()
        return asyncio.create_task(self.run())

    async def submit(self, items: list[ScoreItem], thresholds: list[float]) -> list[ScoreResult]:
        cost = sum(len(i.config) + sum(len(m["content"]) for m in i.messages) + len(i.response or "")
                   for i in items) // 4
        future = asyncio.get_running_loop().create_future()
        await self.queue.put(_Job(items, thresholds, future, cost))
        return await future

    async def _gather(self) -> list[_Job]:
        loop = asyncio.get_running_loop()
        jobs = [await self.queue.get()]
        deadline, cost = loop.time() + self.wait_s, jobs[0].cost
        while cost < self.max_tokens:
            timeout = deadline - loop.time()
            if timeout <= 0 and self.queue.empty():
                break
            try:
                job = self.queue.get_nowait() if timeout <= 0 else await asyncio.wait_for(self.queue.get(), timeout)
            except (TimeoutError, asyncio.QueueEmpty):
                break
            jobs.append(job)
            cost += job.cost
        return jobs

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._gather()
            items = [i for job in jobs for i in job.items]
            thresholds = [t for job in jobs for t in job.thresholds]
            self.stats["batches"] += 1
            self.stats["requests"] += len(jobs)
            self.stats["items"] += len(items)
            self.stats["max_requests_per_batch"] = max(self.stats["max_requests_per_batch"], len(jobs))
            try:
                results = await loop.run_in_executor(self.executor, self.scorer.score_items, items, thresholds)
            except Exception as err:  # noqa: BLE001 - handed to every waiting request
                logger.exception("scoring failed")
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(err)
                continue
            start = 0
            for job in jobs:
                if not job.future.done():
                    job.future.set_result(results[start:start + len(job.items)])
                start += len(job.items)


# -- body size -----------------------------------------------------------------------------------------
class BodyLimit:
    """ASGI middleware: 413 for bodies over ``max_bytes`` (by Content-Length or by counting the stream)."""

    def __init__(self, app, max_bytes: int = MAX_BODY_BYTES):
        self.app, self.max_bytes = app, max_bytes

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
        while more:
            message = await receive()
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
               model_name: str = "", default_config: str | SafetyConfig | None = None,
               reward_output: str = "reward") -> FastAPI:
    """The FastAPI app serving ``scorer`` (a :class:`csrm.scoring.CSRMScorer`).

    ``default_config`` and ``reward_output`` serve ``/get_reward`` (:mod:`csrm.openrlhf`)."""
    batcher = Batcher(scorer, wait_s=batch_wait_ms / 1000, max_tokens=batch_tokens)

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
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.state.batcher = batcher

    def check_count(n: int, loc: str) -> None:
        if n > max_items:
            raise bad_field(413, [loc], f"{n} entries; at most {max_items} per request")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": model_name, "device": str(getattr(scorer, "device", "")),
                "prefix_cache": bool(getattr(scorer, "prefix_cache", False)), "queue": batcher.queue.qsize(),
                "max_items": max_items, "max_body_bytes": max_body_bytes, **batcher.stats}

    @app.post("/score")
    async def score(request: ScoreRequest) -> dict[str, Any]:
        check_count(len(request.items), "items")
        pairs = [to_item(e, e.response, ["items", i], scorer.render) for i, e in enumerate(request.items)]
        results = await batcher.submit([p[0] for p in pairs], [scorer.threshold_for(p[1]) for p in pairs])
        return {"results": [{"id": None if e.id is None else str(e.id), **result_json(r)}
                            for e, r in zip(request.items, results, strict=True)]}

    @app.post("/rank")
    async def rank_responses(request: RankRequest) -> dict[str, Any]:
        check_count(len(request.responses), "responses")
        first, config = to_item(request, None, [], scorer.render)
        items = [ScoreItem(first.config, first.messages, r) for r in request.responses]
        results = await batcher.submit(items, [scorer.threshold_for(config)] * len(items))
        return {"ranking": [{"rank": position, "index": i, **result_json(results[i]),
                             "error": estimated_error(results[i])} for position, i in enumerate(rank(results))]}

    @app.post("/get_reward")
    async def get_reward(request: GetRewardRequest) -> dict[str, Any]:
        from csrm.openrlhf import QueryError, get_reward_body
        from csrm.reward_funcs import reward_value

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="csrm serve", description="serve a CSRM over HTTP (score, rank, health)")
    parser.add_argument("model", help="trained CSRM folder or hub id")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-items", type=int, default=MAX_ITEMS, help="max items or responses per request")
    parser.add_argument("--max-body-bytes", type=int, default=MAX_BODY_BYTES)
    parser.add_argument("--batch-wait-ms", type=float, default=BATCH_WAIT_MS,
                        help="how long the batcher waits for more requests")
    parser.add_argument("--batch-tokens", type=int, default=None,
                        help="token budget per gathered batch (default 8192) and per forward batch "
                             "(default 8192 on GPU, 2048 on CPU)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--default-config", default=None,
                        help="/get_reward: safety config for queries without a system message: a file "
                             "(.yaml/.json/.txt, csrm.SafetyConfig) or the policy text itself")
    parser.add_argument("--reward-output", choices=OUTPUTS, default="reward",
                        help="/get_reward: the number returned: reward head, p_comply, or neg_error "
                             "(compliant responses always above violating ones)")
    parser.add_argument("--log-level", default="info")
    return parser


def default_config_arg(value: str | None) -> str | SafetyConfig | None:
    """``--default-config``: a config file if one exists at that path, else the policy text as given."""
    if value is None or not value.strip():
        return None
    from pathlib import Path

    path = Path(value)
    return SafetyConfig.from_file(path) if len(value) < 4096 and path.is_file() else value


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    from csrm.scoring import load

    args = build_parser().parse_args(argv)
    default_config = default_config_arg(args.default_config)  # a bad file fails before the model loads
    scorer = load(args.model, device=args.device, max_tokens=args.batch_tokens, bf16=args.bf16,
                  num_threads=args.threads)
    app = create_app(scorer, max_items=args.max_items, max_body_bytes=args.max_body_bytes,
                     batch_wait_ms=args.batch_wait_ms, batch_tokens=args.batch_tokens or DEFAULT_MAX_TOKENS,
                     model_name=str(args.model), default_config=default_config,
                     reward_output=args.reward_output)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0
