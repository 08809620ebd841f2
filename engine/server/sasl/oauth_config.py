"""The OAUTHBEARER settings of the server (Kafka's ``sasl.oauthbearer.*``
broker configs, in the [server] table of the config file) and the token
validator they make.

Kafka validates OAUTHBEARER tokens with its unsecured validator when
nothing else is configured: anyone who can reach the listener may then name
any principal. Here nothing is implied: a listener that enables
OAUTHBEARER needs either ``sasl.oauthbearer.jwks.endpoint.url`` (the
secure validator) or ``sasl.oauthbearer.unsecured = true`` (the unsecured
one, said loudly in the log at start), never both.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from engine.server.config_ranges import OAUTH_FLAGS, OAUTH_RANGES, OAUTH_TEXTS
from engine.server.sasl.jwks import KeySource
from engine.server.sasl.jwt_validator import ClaimRules, JwksValidator, UnsecuredValidator
from engine.server.sasl.oauthbearer import TokenValidator
from s3stream.errors import ConfigOutOfRange
from s3stream.ranges import check_flags, check_ranges, check_texts

log = logging.getLogger("tidelog.server")

PREFIX = "sasl_oauthbearer_"
"""The settings' names in the [server] table, dots made underscores."""


@dataclass(frozen=True)
class OAuthBearerConfig:
    jwks_endpoint_url: str | None = None
    """Where the provider's public keys are: https://, http:// or file://."""
    jwks_endpoint_refresh_ms: int = 3_600_000
    """How often the key set is read again (Kafka's default: an hour)."""
    jwks_endpoint_retry_backoff_ms: int = 100
    """The first wait before a failed read is retried; it doubles ..."""
    jwks_endpoint_retry_backoff_max_ms: int = 10_000
    """... up to this."""
    jwks_endpoint_refresh_min_interval_ms: int = 10_000
    """tidelog's own: a token naming a key the set lacks has it read again,
    but no sooner than this after the last read."""
    expected_audience: tuple[str, ...] = ()
    """The audiences a token's ``aud`` must name one of; empty: not checked."""
    expected_issuer: str | None = None
    """The ``iss`` a token must carry; None: not checked."""
    sub_claim_name: str = "sub"
    """The claim holding the user name."""
    scope_claim_name: str = "scope"
    clock_skew_seconds: int = 30
    """Leeway for ``exp`` and ``nbf`` against this machine's clock."""
    unsecured: bool = False
    """Accept unsigned tokens (``alg: none``): for development only."""

    def __post_init__(self) -> None:
        # A comma-separated audience (Kafka's form) is kept as its tuple.
        check_texts(self, OAUTH_TEXTS)
        check_ranges(self, OAUTH_RANGES)
        check_flags(self, OAUTH_FLAGS)
        url = self.jwks_endpoint_url
        if url is not None:
            if urlparse(url).scheme not in ("http", "https", "file"):
                raise ConfigOutOfRange(
                    "jwks_endpoint_url", url, "an http://, https:// or file:// URL, or unset"
                )
            if self.unsecured:
                raise ValueError(
                    f"{_name('unsecured')} and {_name('jwks_endpoint_url')} are both set:"
                    " tokens are either verified with the key set or not at all"
                )

    @property
    def configured(self) -> bool:
        """Whether a validator is chosen (OAUTHBEARER may then be enabled)."""
        return self.unsecured or self.jwks_endpoint_url is not None

    @classmethod
    def take(cls, settings: dict[str, Any]) -> OAuthBearerConfig | None:
        """The settings named ``sasl_oauthbearer_*`` of ``settings``, taken
        out of it; None when there are none. Each is a field's: the file's
        reader refused any other key of [server] as unknown, in the words
        it names every unknown key in."""
        mine = {key[len(PREFIX) :]: settings.pop(key) for key in list(settings) if _ours(key)}
        if not mine:
            return None
        try:
            return cls(**mine)
        except ConfigOutOfRange as refused:  # named by its key among the others
            raise refused.named(PREFIX + refused.setting) from None

    def rules(self) -> ClaimRules:
        return ClaimRules(
            sub_claim_name=self.sub_claim_name,
            scope_claim_name=self.scope_claim_name,
            expected_audience=self.expected_audience,
            expected_issuer=self.expected_issuer,
            clock_skew_s=self.clock_skew_seconds,
            # Kafka's unsecured validator takes a token without iat.
            require_iat=not self.unsecured,
        )


def _ours(key: str) -> bool:
    return key.startswith(PREFIX)


def _name(field_name: str) -> str:
    """A setting's name as Kafka and the docs write it."""
    return "sasl.oauthbearer." + field_name.replace("_", ".")


async def start_validator(
    config: OAuthBearerConfig, now_ms: Callable[[], int]
) -> tuple[TokenValidator, KeySource | None]:
    """The validator ``config`` chooses, and the key source it reads (to be
    stopped with the server). A file:// key set that cannot be read fails
    the start; an endpoint that cannot be reached is retried."""
    if config.unsecured:
        log.warning(
            "SASL/OAUTHBEARER takes UNSIGNED tokens (sasl.oauthbearer.unsecured = true):"
            " any client can name any principal. For development only."
        )
        return UnsecuredValidator(config.rules(), now_ms), None
    url = config.jwks_endpoint_url
    assert url is not None, "OAUTHBEARER without a validator"
    if importlib.util.find_spec("cryptography") is None:
        raise RuntimeError(
            "sasl.oauthbearer.jwks.endpoint.url needs the cryptography package to verify"
            " token signatures: pip install 'tidelog[oauth]'"
        )
    source = KeySource(
        url,
        refresh_s=config.jwks_endpoint_refresh_ms / 1000,
        min_refresh_s=config.jwks_endpoint_refresh_min_interval_ms / 1000,
        retry_backoff_s=config.jwks_endpoint_retry_backoff_ms / 1000,
        retry_backoff_max_s=config.jwks_endpoint_retry_backoff_max_ms / 1000,
    )
    if urlparse(url).scheme == "file":
        await source.load()
    await source.start(loaded=urlparse(url).scheme == "file")
    return JwksValidator(source, config.rules(), now_ms), source
