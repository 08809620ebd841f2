"""The controller mutation quota (KIP-599): ``controller_mutation_rate``,
partitions created or deleted a second, by CreateTopics, CreatePartitions
and DeleteTopics, resolved through the same entities and precedence as the
byte rates (quotas.py).

As Kafka's ControllerMutationQuotaManager, the rate is a token bucket: a
bucket holds at most the quota times the window (``WINDOW_SAMPLES`` of
``WINDOW_SECONDS``, a burst), refills at the quota, and each mutation takes
its partitions out of it, going below zero if it must. The throttle time
is what refills the bucket to zero. A request of a version that knows
THROTTLING_QUOTA_EXCEEDED (CreateTopics v6+, CreatePartitions v3+,
DeleteTopics v5+) is strict: a topic met while the bucket is below zero is
refused with that code, and one met while it is not is done whole, however
many partitions it takes. An older request is permissive: every topic is
done, and the answer carries the throttle time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from engine.errors import EngineError
from engine.protocol.kafka_code import KafkaCode
from engine.quota_entities import CONTROLLER_MUTATION_RATE, ClientQuotas
from engine.server.quotas import (
    USER_PRINCIPAL,
    WINDOW_SAMPLES,
    WINDOW_SECONDS,
    resolve,
    throttle_time_ms,
)


class ThrottlingQuotaExceeded(EngineError):
    """A topic refused because its principal's mutation quota is spent."""

    code = KafkaCode.THROTTLING_QUOTA_EXCEEDED

    def __init__(self) -> None:
        super().__init__("The throttling quota has been exceeded.")


_MAX_BUCKETS = 1024
"""Buckets remembered; past it, the full ones (nothing owed) are forgotten."""


@dataclass
class TokenBucket:
    """Kafka's TokenBucket stat: ``tokens`` left of ``quota * window``."""

    quota: float
    tokens: float
    at: float

    @property
    def burst(self) -> float:
        return self.quota * WINDOW_SAMPLES * WINDOW_SECONDS

    def refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.quota)
        self.at = now

    def throttle_ms(self) -> int:
        if self.tokens >= 0:
            return 0
        # Kafka's ControllerMutationQuotaManager.throttleTimeMs: what refills
        # the bucket to zero, uncapped
        return throttle_time_ms(-self.tokens / self.quota * 1000)


class MutationQuotas:
    """The token buckets of every (user, client id) under a controller
    mutation quota. Used from the admin thread that runs topic changes."""

    def __init__(self, quotas: ClientQuotas, now: Callable[[], float]) -> None:
        self.quotas = quotas
        self._now = now
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self._lock = threading.Lock()

    def for_request(self, principal: str, client_id: str | None, strict: bool) -> Mutations:
        """What one request may mutate; ``strict`` for the versions that
        know THROTTLING_QUOTA_EXCEEDED."""
        found = resolve(
            self.quotas.state,
            CONTROLLER_MUTATION_RATE,
            principal.removeprefix(USER_PRINCIPAL),
            client_id or "",
        )
        if found is None:
            return Mutations(self, None, strict)
        key, quota = found
        return Mutations(self, (key, quota), strict)

    def tokens(self, key: tuple[str, str], quota: float) -> float:
        with self._lock:
            return self._bucket(key, quota).tokens

    def take(self, key: tuple[str, str], quota: float, partitions: int) -> None:
        with self._lock:
            self._bucket(key, quota).tokens -= partitions

    def throttle_ms(self, key: tuple[str, str], quota: float) -> int:
        with self._lock:
            return self._bucket(key, quota).throttle_ms()

    def _bucket(self, key: tuple[str, str], quota: float) -> TokenBucket:
        now = self._now()
        bucket = self._buckets.get(key)
        if bucket is None or bucket.quota != quota:  # new, or its quota changed
            if len(self._buckets) >= _MAX_BUCKETS:
                self._forget_full(now)
            bucket = self._buckets[key] = TokenBucket(quota, quota * WINDOW_SAMPLES, now)
        bucket.refill(now)
        return bucket

    def _forget_full(self, now: float) -> None:
        for key, bucket in list(self._buckets.items()):
            bucket.refill(now)
            if bucket.tokens >= bucket.burst:
                del self._buckets[key]


class Mutations:
    """One request's mutations against its quota (none: unlimited)."""

    def __init__(
        self,
        quotas: MutationQuotas | None,
        bucket: tuple[tuple[str, str], float] | None,
        strict: bool,
    ) -> None:
        self._quotas = quotas
        self._bucket = bucket
        self.strict = strict

    def refused(self) -> bool:
        """Whether the next topic is refused THROTTLING_QUOTA_EXCEEDED."""
        if self._quotas is None or self._bucket is None or not self.strict:
            return False
        return self._quotas.tokens(*self._bucket) < 0

    def record(self, partitions: int) -> None:
        if self._quotas is not None and self._bucket is not None and partitions > 0:
            self._quotas.take(*self._bucket, partitions)

    def throttle_ms(self) -> int:
        """The answer's throttle time: what refills the bucket to zero."""
        if self._quotas is None or self._bucket is None:
            return 0
        return self._quotas.throttle_ms(*self._bucket)
