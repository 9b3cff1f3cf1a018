"""Dynamic batching for ``csrm serve``: one worker gathers concurrent requests into scorer calls.

See :class:`Batcher` for the order items are served in and how requests are admitted.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from csrm.base.score_types import ScoreItem, ScoreResult
from csrm.base.text import cap_item
from csrm.model.batching import DEFAULT_MAX_TOKENS

logger = logging.getLogger(__name__)

BATCH_WAIT_MS = 5.0
REQUEST_TIMEOUT_S = 120.0
MAX_PENDING = 4096


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

