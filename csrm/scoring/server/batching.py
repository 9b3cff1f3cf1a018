"""Dynamic batching for ``csrm serve``: one worker gathers concurrent requests into scorer calls.

**Order of service: earliest deadline first.** A request's deadline is its arrival plus ``request_timeout``
(none: last, in arrival order). Each forward batch is filled under ``batch_tokens`` (estimated tokens of the
capped text, :func:`estimate_tokens`) from the requests in deadline order, so with one timeout for all it is
FIFO: an admitted request is not slowed by the ones that arrive after it. The round-robin order used before
made every request of a burst progress together and all of them finish late together (issue #30: 0 of 200
succeeded). One exception keeps small requests quick: a request whose remaining work fits in a quarter of a
batch goes ahead of earlier ones when, at the measured throughput, every request it passes still meets its
deadline (so a 1-item request is not stuck behind a 64-item one that has time to spare).

**Admission: only what can be scored in time.** The worker keeps an exponentially weighted average of its
speed in seconds per estimated token (:data:`RATE_SMOOTHING`) and assumes the lower of that rate and the
latest batch's (the app measures a warm-up batch before it opens the port, :meth:`Batcher.warm_up`). Only
batches of at least a quarter of ``batch_tokens`` count (:data:`MEASURE_SHARE`): a one-item batch at idle
takes mostly fixed overhead and would make the next burst look far too expensive; under load, batches are
full. A request with a timeout is admitted only if the work queued before it, the batch in flight and its own
work fit in :data:`ADMIT_HEADROOM` of its timeout at that rate (or if nothing else waits); otherwise it gets
:class:`Busy` at once, with the seconds until enough work has drained as its ``Retry-After``. ``max_pending`` still bounds the waiting items whatever the rate. So under a burst the
requests admitted complete and the rest are refused early, instead of every request waiting out its timeout.

**Isolation**: if a batch fails, each request in it is scored alone, so only the request at fault gets the
error and the others get their results. When idle, the worker waits up to ``batch_wait_ms`` for more
requests before the first batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
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
ADMIT_HEADROOM = 0.75  # admitted work must fit in this share of the timeout (the rate is an estimate)
RATE_SMOOTHING = 0.3  # weight of the newest batch in the throughput average
PROVISIONAL_SHARE = 0.5  # share of the warm-up's rate admission counts on before a real batch is measured
SMALL_SHARE = 4
MEASURE_SHARE = 4  # only batches of at least batch_tokens / MEASURE_SHARE estimated tokens update the rate  # a request with at most batch_tokens / SMALL_SHARE tokens left may go ahead (module doc)


class Busy(Exception):
    """The request cannot be scored in time (or too many items wait): refused with 503 and ``retry_after``."""

    def __init__(self, message: str, retry_after: float = 1.0):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(eq=False)
class _Job:
    items: list[ScoreItem]
    thresholds: list[float]
    costs: list[int]
    future: asyncio.Future
    deadline: float = math.inf  # loop time by which it must be answered
    seq: int = 0  # arrival order, breaks deadline ties
    next: int = 0  # first item not yet handed to a batch
    results: list[ScoreResult | None] = field(default_factory=list)
    finished: int = 0

    @property
    def remaining(self) -> int:
        return len(self.items) - self.next

    @property
    def remaining_cost(self) -> int:
        return sum(self.costs[self.next:])

    @property
    def live(self) -> bool:
        return not self.future.done() and self.remaining > 0


def estimate_tokens(item: ScoreItem, cap: int | None = None, max_length: int | None = None) -> int:
    """Rough token count of an item (characters / 4 of its capped text), at most ``max_length``."""
    if cap is not None:
        item = cap_item(item, cap)
    chars = len(item.config) + sum(len(m["content"]) for m in item.messages) + len(item.response or "")
    tokens = chars // 4 + 1
    return min(tokens, max_length) if max_length else tokens


def retry_seconds(seconds: float) -> int:
    """A ``Retry-After`` value: whole seconds, at least 1, at most 60."""
    return int(min(60, max(1, math.ceil(seconds))))


@dataclass
class Batcher:
    """Gathers concurrent requests into scorer calls, earliest deadline first, admitting what fits (module doc)."""

    scorer: Any
    wait_s: float = BATCH_WAIT_MS / 1000
    max_tokens: int = DEFAULT_MAX_TOKENS
    max_pending: int = MAX_PENDING
    stats: dict[str, Any] = field(default_factory=lambda: {
        "requests": 0, "batches": 0, "items": 0, "max_requests_per_batch": 0, "failed_requests": 0,
        "isolated_batches": 0, "timeouts": 0, "busy": 0, "tokens_per_second": None})

    def __post_init__(self) -> None:
        self.active: list[_Job] = []
        self.wakeup = asyncio.Event()  # re-made on the serving loop by start()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="csrm-score")
        self.cap = getattr(self.scorer, "char_cap", None)
        model_config = getattr(getattr(self.scorer, "model", None), "config", None)
        self.max_length = getattr(model_config, "max_length", None)
        self.average: float | None = None  # seconds per estimated token, EWMA over batches
        self.rate: float | None = None  # tokens/s admission assumes: min(1 / average, latest batch)
        self.inflight_cost = 0
        self.provisional = False  # the rate comes from the warm-up only
        self.seq = itertools.count()

    def start(self) -> asyncio.Task:
        """Start the worker on the running loop."""
        self.wakeup = asyncio.Event()
        return asyncio.create_task(self.run())

    @property
    def pending(self) -> int:
        """Items accepted and not yet handed to a batch."""
        return sum(job.remaining for job in self.active if not job.future.done())

    def queued_cost(self) -> int:
        """Estimated tokens admitted and not yet scored (the batch in flight included)."""
        return self.inflight_cost + sum(job.remaining_cost for job in self.active if job.live)

    def _measure(self, cost: int, seconds: float) -> None:
        if cost <= 0 or seconds <= 0:
            return
        observed = cost / seconds
        # the average is taken over seconds per token, so one fast batch (all its texts cached) raises the
        # rate by at most 1 / (1 - RATE_SMOOTHING) while a slow one lowers it at once (the min below)
        per_token = seconds / cost
        self.average = per_token if self.average is None else \
            RATE_SMOOTHING * per_token + (1 - RATE_SMOOTHING) * self.average
        self.rate = min(1 / self.average, observed)
        self.provisional = False
        self.stats["tokens_per_second"] = round(self.rate, 1)

    def warm_up(self) -> None:
        """Score one synthetic batch (about half of ``max_tokens``) and take its throughput as a provisional
        estimate, so admission works from the first request on (blocking; the app runs it before serving).

        The items look like real ones (a policy of eight distinct rules, a prompt, a few sentences of response,
        about 300 estimated tokens) and no two share a text, so caches (a prefix cache, the clause model's
        per-text features) cannot make the warm-up faster than cold traffic. Until a real batch has been
        measured, admission counts only half of this rate (:data:`PROVISIONAL_SHARE`)."""
        words = ("alpha", "bravo", "cedar", "delta", "ember", "fable", "grove", "harbor", "island", "jasper")
        count = max(1, min(16, self.max_tokens // (2 * 300)))
        items = []
        for i in range(count):
            w = [words[(i + k) % len(words)] + str(i) for k in range(len(words))]
            rules = "\n".join(f"{k + 1}. Content about {w[k]} and {w[(k + 3) % 10]} is limited to general "
                              f"discussion; never give {w[(k + 5) % 10]} instructions." for k in range(8))
            prompt = f"Question {i}: tell me about {w[1]} {w[2]} and how {w[3]} relates to {w[4]} today."
            response = " ".join(f"The {w[k]} answer covers {w[(k + 2) % 10]} in plain terms." for k in range(6))
            items.append(ScoreItem(rules, [{"role": "user", "content": prompt}], response))
        start = time.perf_counter()
        self.scorer.score_items(items, [0.5] * count)
        self._measure(sum(estimate_tokens(i, self.cap, self.max_length) for i in items), time.perf_counter() - start)
        self.provisional = True

    def admit(self, cost: int, n_items: int, timeout: float | None) -> None:
        """Raise :class:`Busy` unless a request of ``n_items`` items and ``cost`` estimated tokens can be taken."""
        if self.pending + n_items > self.max_pending:
            self.stats["busy"] += 1
            drain = self.queued_cost() / self.rate if self.rate else 1.0
            raise Busy(f"{self.pending} items are waiting; at most {self.max_pending}", drain)
        queued = self.queued_cost()
        if timeout is None or self.rate is None or queued == 0:
            return
        budget = ADMIT_HEADROOM * timeout * self.rate * (PROVISIONAL_SHARE if self.provisional else 1.0)
        if queued + cost > budget:
            self.stats["busy"] += 1
            raise Busy(f"the {queued + cost} tokens queued with this request would take "
                       f"{(queued + cost) / self.rate:.1f} s at the measured {self.rate:.0f} tokens/s; "
                       f"the request timeout is {timeout:g} s", (queued + cost - budget) / self.rate)

    async def submit(self, items: list[ScoreItem], thresholds: list[float], timeout: float | None = None
                     ) -> list[ScoreResult]:
        """Results of ``items`` in order. Raises :class:`Busy` when the request cannot be admitted (module
        doc) and :class:`TimeoutError` after ``timeout`` seconds (the job is dropped)."""
        costs = [estimate_tokens(i, self.cap, self.max_length) for i in items]
        self.admit(sum(costs), len(items), timeout)
        loop = asyncio.get_running_loop()
        job = _Job(items, thresholds, costs, loop.create_future(),
                   deadline=math.inf if timeout is None else loop.time() + timeout, seq=next(self.seq),
                   results=[None] * len(items))
        self.active.append(job)
        self.stats["requests"] += 1
        self.wakeup.set()
        try:
            return await asyncio.wait_for(job.future, timeout)
        except TimeoutError:
            self.stats["timeouts"] += 1
            raise

    def _order(self, now: float) -> list[_Job]:
        """Live jobs earliest deadline first; small ones ahead where that costs no one their deadline."""
        rest = sorted((j for j in self.active if j.live), key=lambda j: (j.deadline, j.seq))
        promoted: list[_Job] = []
        delay = 0.0  # seconds of promoted work now scheduled before ``rest``
        for candidate in list(rest[1:]):
            cost = candidate.remaining_cost
            if cost > self.max_tokens // SMALL_SHARE:
                continue
            ahead = rest[:rest.index(candidate)]
            if self.rate is None:
                feasible = all(j.deadline == math.inf for j in ahead)
            else:
                finish, feasible = now + delay, True
                for job in ahead:
                    finish += job.remaining_cost / self.rate
                    if finish + cost / self.rate > job.deadline:
                        feasible = False
                        break
            if feasible:
                promoted.append(candidate)
                rest.remove(candidate)
                delay += cost / self.rate if self.rate else 0.0
        return promoted + rest

    def _pick(self, now: float) -> list[tuple[_Job, int, int]]:
        """One batch: items of the jobs in :meth:`_order` under ``max_tokens`` (at least one item)."""
        picks, cost = [], 0
        for job in self._order(now):
            taken = 0
            while job.next + taken < len(job.items):
                item_cost = job.costs[job.next + taken]
                if cost and cost + item_cost > self.max_tokens:
                    break
                cost += item_cost
                taken += 1
            if taken:
                picks.append((job, job.next, job.next + taken))
                job.next += taken
            if cost >= self.max_tokens:
                break
        self.active = [j for j in self.active if j.live]
        return picks

    async def _score(self, picks: list[tuple[_Job, int, int]]) -> None:
        loop = asyncio.get_running_loop()
        items = [i for job, a, b in picks for i in job.items[a:b]]
        thresholds = [t for job, a, b in picks for t in job.thresholds[a:b]]
        start = time.perf_counter()
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
        cost = sum(c for job, a, b in picks for c in job.costs[a:b])
        if cost >= self.max_tokens // MEASURE_SHARE:  # a small batch's time is mostly fixed overhead
            self._measure(cost, time.perf_counter() - start)
        start_index = 0
        for job, a, b in picks:
            if not job.future.done():
                job.results[a:b] = results[start_index:start_index + b - a]
                job.finished += b - a
                if job.finished == len(job.items):
                    job.future.set_result(job.results)
            start_index += b - a

    def _fail(self, job: _Job, err: Exception) -> None:
        logger.warning("scoring a request failed: %s: %s", type(err).__name__, err)
        self.stats["failed_requests"] += 1
        job.next = len(job.items)  # nothing more of it is scheduled
        if not job.future.done():
            job.future.set_exception(err)

    async def _gather(self) -> None:
        """Idle until a request comes, then up to ``wait_s`` for more (or a full batch)."""
        loop = asyncio.get_running_loop()
        self.active = []
        self.wakeup.clear()
        await self.wakeup.wait()
        deadline = loop.time() + self.wait_s
        while loop.time() < deadline and sum(j.remaining_cost for j in self.active if j.live) < self.max_tokens:
            self.wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), deadline - loop.time())

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not any(job.live for job in self.active):
                await self._gather()
            picks = self._pick(loop.time())
            if not picks:
                continue
            self.stats["batches"] += 1
            self.stats["items"] += sum(b - a for _, a, b in picks)
            self.stats["max_requests_per_batch"] = max(self.stats["max_requests_per_batch"], len(picks))
            self.inflight_cost = sum(c for job, a, b in picks for c in job.costs[a:b])
            try:
                await self._score(picks)
            finally:
                self.inflight_cost = 0
