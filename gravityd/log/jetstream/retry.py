"""Asking JetStream again, at open, while the cluster is not ready.

Nodes that have just started or restarted answer the JetStream API late, or not at all, until
their meta leader and then the stream's leader are elected (NATS elects after 4-9 s), and a
loaded cluster may answer a consumer's creation after the request's timeout: a request times
out, finds no responders, or is answered "temporarily unavailable". Such a failure says "not
yet", not "no", so open() asks again, backing off, until js_open_timeout_s has passed; only then
does it raise its LogError. A daemon would retry the LogError anyway, but a library caller (or
a test) opening the log right after its cluster started would fail on the first request.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import nats.errors
import nats.js.errors

from gravityd.log.jetstream.metrics import JetStreamMetrics
from gravityd.log.jetstream_params import JetStreamParams

log = logging.getLogger("gravityd.log.jetstream")

T = TypeVar("T")

# JetStream API error codes that mean "the cluster is not ready yet", from nats-server:
NOT_READY_CODES = frozenset(
    {
        10005,  # no suitable peers for placement: the meta leader has not seen its peers yet
        10007,  # JetStream cluster not assigned to this server
        10008,  # JetStream system temporarily unavailable (no meta leader)
        10009,  # JetStream cluster can not handle request (not the leader, one being elected)
        10118,  # stream is offline (its peers are still starting)
    }
)
FIRST_BACKOFF_S = 0.05
MAX_BACKOFF_S = 1.0


def not_ready(exc: BaseException) -> bool:
    """Whether a failed JetStream request means the cluster is not ready yet (ask again), as
    opposed to an answer (not found, bad request, a closed connection) that asking again will
    not change."""
    if isinstance(exc, nats.js.errors.APIError):
        # A 503 without a code is nats-py's "nothing serves the JetStream API yet".
        unavailable = isinstance(exc, nats.js.errors.ServiceUnavailableError)
        return exc.err_code in NOT_READY_CODES or (unavailable and exc.err_code is None)
    return isinstance(
        exc,
        TimeoutError  # nats.errors.TimeoutError is one too
        | nats.errors.NoRespondersError
        | nats.errors.ConnectionReconnectingError,
    )


class OpenRetry:
    """One open's budget for asking JetStream again: each call runs a request, and while it
    fails with a not-ready error, logs it, counts it in gravityd_js_open_retries{stage} and runs
    it again after a back-off (doubling from FIRST_BACKOFF_S to MAX_BACKOFF_S, jittered so that
    processes restarted together do not ask in step), until the open's deadline; then the last
    error is raised for the caller to turn into its LogError. Every stage of an open shares
    the deadline, so an open fails within js_open_timeout_s (plus one request's timeout)."""

    def __init__(
        self,
        params: JetStreamParams,
        metrics: JetStreamMetrics,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.stream = params.js_stream
        self.metrics = metrics
        self.clock = clock
        self.sleep = sleep
        self.jitter = jitter
        self.deadline = clock() + params.js_open_timeout_s
        self.retries = 0  # of this open, every stage

    async def __call__(self, stage: str, request: Callable[[], Awaitable[T]]) -> T:
        """`await request()`, asked again while the cluster is not ready (see the class)."""
        backoff = FIRST_BACKOFF_S
        attempt = 1
        while True:
            try:
                return await request()
            except Exception as exc:
                left = self.deadline - self.clock()
                if not not_ready(exc) or left <= 0:
                    raise
                pause = min(backoff * (0.5 + self.jitter() / 2), left)
                self.retries += 1
                self.metrics.open_retries.labels(stage).inc()
                log.warning(
                    "jetstream not ready at open, asking again",
                    extra={
                        "stream": self.stream,
                        "stage": stage,
                        "attempt": attempt,
                        "error": describe(exc),
                        "retry_in_s": round(pause, 3),
                        "left_s": round(left, 3),
                    },
                )
                await self.sleep(pause)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                attempt += 1


def describe(exc: BaseException) -> str:
    """How a NATS error reads in a log line and in a LogError: its type and its one-line text."""
    text = str(exc).strip().replace("\n", " ")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
