"""Enforcement of the client byte-rate quotas and the request quota, as
Kafka's ClientQuotaManager and ClientRequestQuotaManager do it: each
Produce request's size, each Fetch response's size and the server's time
on each request (in percent of a second) is recorded against the (user,
client-id) entity the quota resolves to, its rate measured over
``WINDOW_SAMPLES`` samples of ``WINDOW_SECONDS``; past the quota, the
answer carries a throttle time (the longest, past more than one) and the
server stops reading from the connection for that long (KIP-219), while
the client backs off. A Fetch answer past the quota is sent empty (its
bytes are not counted), and a Fetch asks for no more than the quota
allows in one window, as Kafka's KafkaApis.handleFetchRequest does.

The quotas themselves live in the catalog (engine/quota_entities.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from engine import clock
from engine.protocol.apis import ApiKey
from engine.quota_entities import (
    CLIENT_ID,
    CONSUMER_BYTE_RATE,
    PRODUCER_BYTE_RATE,
    REQUEST_PERCENTAGE,
    USER,
    ClientQuotas,
    Entity,
)

WINDOW_SAMPLES = 11
"""Kafka's quota.window.num."""
WINDOW_SECONDS = 1.0
"""Kafka's quota.window.size.seconds."""
MAX_THROTTLE_MS = 2**31 - 1
"""The longest throttle answered: throttle_time_ms is an int32. Kafka caps
neither a byte-rate throttle nor a controller mutation one (its
ClientQuotaManager and ControllerMutationQuotaManager answer the whole
time owed, so that a client waiting each throttle out is held to its
quota whatever its requests' size); past an int32, its Long-to-Int cast
wraps and frees the client, where this bound keeps it throttled."""
MAX_REQUEST_THROTTLE_MS = int(WINDOW_SECONDS * 1000)
"""Kafka's cap on a request-quota throttle: one sample of the window
(ClientRequestQuotaManager's maxThrottleTimeMs, quota.window.size.seconds)."""


def throttle_time_ms(milliseconds: float, cap: int = MAX_THROTTLE_MS) -> int:
    """A throttle time computed in doubles, rounded as Kafka's Math.round
    rounds it, at most ``cap``. Capped before it is made an int: Kafka
    takes any positive double as a quota, and one as small as 5e-324 makes
    the quotient infinite (Python's int() raises), which is the cap."""
    if not milliseconds < cap:  # a NaN too: throttled rather than freed
        return cap
    return math.floor(milliseconds + 0.5)


SWEEP_AT = 1024
"""Idle buckets are forgotten once there are this many (or twice as many
as after the last sweep)."""

BYTE_RATED: Mapping[int, str] = {
    ApiKey.PRODUCE: PRODUCER_BYTE_RATE,
    ApiKey.FETCH: CONSUMER_BYTE_RATE,
}
"""The APIs whose bytes are counted, and the quota they count against."""
REQUEST_TIME = -1
"""Not an API key: what the request quota is looked up by (every API)."""
_QUOTA_KEYS: Mapping[int, str] = {**BYTE_RATED, REQUEST_TIME: REQUEST_PERCENTAGE}

USER_PRINCIPAL = "User:"
"""The principal type whose name is a quota's user (User:ANONYMOUS included)."""


def precedence(user: str, client_id: str) -> tuple[Entity, ...]:
    """The entities a (user, client id) may take its quota from, first
    found wins: Kafka's order (DefaultQuotaCallback), from
    /users/<user>/clients/<client> to /clients/<default>."""
    u: tuple[tuple[str, str | None], ...] = ((USER, user),)
    du: tuple[tuple[str, str | None], ...] = ((USER, None),)
    c: tuple[tuple[str, str | None], ...] = ((CLIENT_ID, client_id),)
    dc: tuple[tuple[str, str | None], ...] = ((CLIENT_ID, None),)
    # An entity is sorted by type: client-id before user.
    return (c + u, dc + u, u, c + du, dc + du, du, c, dc)


def resolve(
    entities: Mapping[Entity, Mapping[str, float]], key: str, user: str, client_id: str
) -> tuple[tuple[str, str], float] | None:
    """The quota ``key`` of a (user, client id), and the bucket its bytes
    are counted in: (user, client id) with a part blank where the quota's
    entity has no such type (a /users/<user> quota is shared by all that
    user's clients, as in Kafka); None when no quota applies."""
    for entity in precedence(user, client_id):
        quotas = entities.get(entity)
        if quotas is not None and key in quotas:
            types = {entity_type for entity_type, _ in entity}
            bucket = (user if USER in types else "", client_id if CLIENT_ID in types else "")
            return bucket, quotas[key]
    return None


@dataclass
class Rate:
    """Kafka's Rate over a SampledStat: the sum of the samples still in the
    window over the time they span, that time taken as at least
    ``WINDOW_SAMPLES - 1`` whole samples (so a first burst is not measured
    over a few milliseconds)."""

    samples: list[list[float]] = field(default_factory=list)
    """[start, bytes] per sample, oldest first."""

    def record(self, now: float, value: float) -> float:
        """Counts ``value`` at ``now``; returns the rate after it."""
        samples = self.samples
        if not samples or now >= samples[-1][0] + WINDOW_SECONDS:
            samples.append([now, 0.0])
        samples[-1][1] += value
        horizon = now - WINDOW_SAMPLES * WINDOW_SECONDS
        while samples[0][0] < horizon or len(samples) > WINDOW_SAMPLES:
            del samples[0]
        return self.measure(now)

    def measure(self, now: float) -> float:
        return sum(s[1] for s in self.samples) / self.window(now)

    def window(self, now: float) -> float:
        elapsed = now - self.samples[0][0]
        full = int(elapsed // WINDOW_SECONDS)
        if full < WINDOW_SAMPLES - 1:
            elapsed += (WINDOW_SAMPLES - 1 - full) * WINDOW_SECONDS
        return elapsed


class QuotaManager:
    """The rates of every quota'd (user, client id) bucket, per quota key."""

    def __init__(self, quotas: ClientQuotas, now: Callable[[], float] = clock.monotonic) -> None:
        self.quotas = quotas
        self._now = now
        self._rates: dict[tuple[str, str, str], Rate] = {}
        self._sweep_at = SWEEP_AT
        self._version = -1

    @property
    def active(self) -> bool:
        """Whether any byte-rate or request quota is set: when not, nothing
        is counted."""
        return self.quotas.byte_rates or self.quotas.request_rates

    def request_throttle_ms(self, principal: str, client_id: str | None, seconds: float) -> int:
        """Records ``seconds`` of the server's time spent on one request
        against the client's request_percentage (Kafka's request quota: the
        share of a thread's time, in percent, a window may use) and returns
        how long its client must wait, in milliseconds."""
        found = self._bucket(REQUEST_TIME, principal, client_id)
        if found is None:
            return 0
        return self._throttle(found, seconds * 100, MAX_REQUEST_THROTTLE_MS)

    def throttle_ms(self, api_key: int, principal: str, client_id: str | None, size: int) -> int:
        """Records ``size`` bytes of a request (``api_key``'s) and returns
        how long its client must wait, in milliseconds (0: within quota)."""
        found = self._bucket(api_key, principal, client_id)
        if found is None:
            return 0
        return self._throttle(found, size)

    def _throttle(self, found: tuple[Rate, float], value: float, cap: int = MAX_THROTTLE_MS) -> int:
        rate, quota = found
        now = self._now()
        measured = rate.record(now, value)
        if measured <= quota:
            return 0
        # Kafka's QuotaUtils.throttleTime: how long at zero rate brings the
        # window's rate back to the quota.
        return throttle_time_ms((measured - quota) / quota * rate.window(now) * 1000, cap)

    def unrecord(self, api_key: int, principal: str, client_id: str | None, size: int) -> None:
        """Takes back ``size`` bytes ``throttle_ms`` counted: a throttled
        Fetch is answered empty, so its bytes were never sent (Kafka's
        ClientQuotaManager.unrecordQuotaSensor)."""
        found = self._bucket(api_key, principal, client_id)
        if found is not None:
            found[0].record(self._now(), -size)

    def window_bytes(self, api_key: int, principal: str, client_id: str | None) -> int | None:
        """The most bytes one answer may carry within the quota: the quota
        over the window less one sample (Kafka's
        getMaxValueInQuotaWindow, which caps a Fetch's max_bytes, so that
        one answer can never pass the quota by itself); None without one."""
        key = BYTE_RATED.get(api_key)
        if key is None:
            return None
        found = resolve(
            self.quotas.state, key, principal.removeprefix(USER_PRINCIPAL), client_id or ""
        )
        if found is None:
            return None
        return max(int(found[1] * (WINDOW_SAMPLES - 1) * WINDOW_SECONDS), 1)

    def _bucket(
        self, api_key: int, principal: str, client_id: str | None
    ) -> tuple[Rate, float] | None:
        """The rate a request of ``api_key`` counts in, and its quota."""
        key = _QUOTA_KEYS.get(api_key)
        if key is None:
            return None
        if self._version != self.quotas.version:  # a quota changed: measure afresh
            self._rates.clear()
            self._version = self.quotas.version
        user = principal.removeprefix(USER_PRINCIPAL)
        found = resolve(self.quotas.state, key, user, client_id or "")
        if found is None:
            return None
        (bucket_user, bucket_client), quota = found
        rate = self._rates.get((key, bucket_user, bucket_client))
        if rate is None:
            if len(self._rates) >= self._sweep_at:
                self._sweep(self._now())
            rate = self._rates[(key, bucket_user, bucket_client)] = Rate()
        return rate, quota

    def _sweep(self, now: float) -> None:
        """Forgets the buckets idle for a whole window (Kafka expires its
        quota sensors likewise): client ids are the peers' to choose, so
        their count must not grow the server without bound. Sweeping when
        the count doubles keeps the cost per request constant."""
        horizon = now - WINDOW_SAMPLES * WINDOW_SECONDS
        self._rates = {k: r for k, r in self._rates.items() if r.samples[-1][0] >= horizon}
        self._sweep_at = max(SWEEP_AT, 2 * len(self._rates))

    @property
    def buckets(self) -> int:
        """How many (user, client id) buckets are measured."""
        return len(self._rates)

    def rate(self, key: str, user: str, client_id: str) -> float:
        """The rate measured in a bucket (``resolve``'s), in bytes a second;
        0 before it counts anything."""
        rate = self._rates.get((key, user, client_id))
        return 0.0 if rate is None or not rate.samples else rate.measure(self._now())
