"""The ranges of the server's settings: ServerConfig's ([server]),
HttpConfig's ([http]) and RegistryConfig's ([schema_registry]), each
checked when its config is made, so a file and code that makes the
configs refuse the same values in the same words (docs/design/0139).

Where Kafka's broker has the setting, the range is its config
definition's, with Kafka's INT type as the bound of a size or count
(SocketServerConfigs, ServerConfigs, ServerLogConfigs); the HTTP
listeners' own bounds are the ones they always had.
"""

from __future__ import annotations

from engine.config_ranges import AUTHORIZATION_TEXTS, DELEGATION_TOKEN_RANGES
from engine.credentials import MECHANISMS
from engine.server.sasl.oauthbearer import OAUTHBEARER
from s3stream.errors import ConfigOutOfRange
from s3stream.ranges import (
    INT_MAX,
    PORT_MAX,
    THREADS_MAX,
    Range,
    Text,
    at_least,
    check_range,
    check_text,
    choice,
    count,
    seconds,
)

FETCH_MAX_BYTES_LEAST = 1024
"""Kafka's lower bound of fetch.max.bytes."""

SERVER_RANGES: dict[str, Range] = {
    "port": at_least(0, most=PORT_MAX),  # 0: one the system picks
    "advertised_port": at_least(0, most=PORT_MAX, optional=True),  # 0: the bound one
    # Metadata's node_id is an int32, and -1 there means "no node".
    "node_id": count(0),
    # Kafka's socket.request.max.bytes, an INT atLeast(1): the frame's
    # length field is an int32 too.
    "max_request_bytes": count(1),
    # Budgets of bytes received, never allocated ahead: Kafka's
    # queued.max.request.bytes is a LONG.
    "max_connection_inflight_bytes": at_least(1),
    "max_inflight_bytes": at_least(1),
    "max_connections": count(1),  # Kafka's INTs; tidelog has no use for 0
    "max_connections_per_ip": count(1),
    "connections_max_idle_ms": at_least(1),  # Kafka's LONG
    "connections_partial_request_timeout_ms": at_least(1),
    "connection_failed_authentication_delay_ms": count(0),  # Kafka's INT atLeast(0)
    # Threads made as logins wait: no more than Linux can run.
    "sasl_password_check_threads": at_least(1, most=THREADS_MAX),
    "sasl_password_check_queue_size": count(0),
    "sasl_password_check_queue_per_address": at_least(1, most=INT_MAX, optional=True),
    # Kafka's fetch.max.bytes, an INT atLeast(1024): a Fetch response's
    # size is an int32 as well.
    "fetch_max_bytes": count(FETCH_MAX_BYTES_LEAST),
    "max_request_partition_size_limit": count(1),  # Kafka's INT atLeast(1)
    "max_incremental_fetch_session_cache_slots": count(0),  # Kafka's INT atLeast(0)
    "min_incremental_fetch_session_eviction_ms": at_least(0),
    # A Fetch's partitions are an int32-counted array.
    "max_incremental_fetch_session_partitions": count(0),
    **{f"delegation_token_{name}": accepted for name, accepted in DELEGATION_TOKEN_RANGES.items()},
    "connections_max_reauth_ms": at_least(0),  # Kafka's LONG; 0: for ever
    "shutdown_timeout_s": seconds(0),  # a wait: 0 drains nothing
    "activity_log_interval_s": seconds(),  # a sleep between lines: 0 would spin
}
"""ServerConfig's numbers (the [server] table, which also takes Kafka's
dotted names for them)."""

SASL_MECHANISMS = (*MECHANISMS, OAUTHBEARER)
"""What sasl.enabled.mechanisms may name: those with stored credentials,
and OAUTHBEARER, whose tokens a validator checks."""

SERVER_TEXTS: dict[str, Text] = {
    "host": Text(),  # "": every interface, as asyncio binds it
    "advertised_host": Text(optional=True),  # None: the listen host
    "ssl_keystore_location": Text(optional=True),
    "ssl_key_password_file": Text(optional=True),
    "ssl_truststore_location": Text(optional=True),
    # Kafka's ssl.client.auth (SslClientAuth): required, requested or none.
    "ssl_client_auth": choice("required", "requested", "none"),
    "ssl_principal_mapping_rules": Text(),
    "delegation_token_secret_key_file": Text(optional=True),  # None: no tokens
    "log_format": choice("text", "json"),
    # Kafka's authorizer.class.name, by tidelog's names: none, or the ACLs.
    "authorizer": choice("", "acl"),
    # Kafka's sasl.enabled.mechanisms, a LIST (listener.name.<name>.sasl.
    # enabled.mechanisms, each listener's, is checked against it too).
    "sasl_enabled_mechanisms": Text(choices=SASL_MECHANISMS, listed=True),
    "super_users": AUTHORIZATION_TEXTS["super_users"],
}
"""ServerConfig's strings: paths and names, and its choices."""

LISTENER_TEXTS: dict[str, Text] = {
    # A listener's name is its security protocol (Kafka's default
    # listener.security.protocol.map), upper case as Kafka normalises it.
    "name": choice("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
    "host": Text(),  # "": every interface
}
"""A Listener's strings (ServerConfig's listeners and advertised_listeners)."""

LISTENER_RANGES: dict[str, Range] = {"port": SERVER_RANGES["port"]}
"""A Listener's numbers."""


def check_listener(setting: str, listener: object) -> None:
    """Raises ConfigOutOfRange naming ``setting``'s field (``listeners'
    port``) for a listener out of LISTENER_TEXTS and LISTENER_RANGES: one
    parse_listeners read from a file, or one made in Python, which would
    otherwise reach the bind or a Metadata answer."""
    for field, text in LISTENER_TEXTS.items():
        check_text(f"{setting}' {field}", getattr(listener, field), text)
    for field, accepted in LISTENER_RANGES.items():
        check_range(f"{setting}' {field}", getattr(listener, field), accepted)


OAUTH_RANGES: dict[str, Range] = {
    # Kafka's sasl.oauthbearer.jwks.endpoint.* are LONGs (its
    # clock.skew.seconds an INT). The refresh and the retry backoffs pace
    # KeySource's loop, which retries an unreachable provider for as long
    # as the server runs: a wait of 0 there (a backoff, or a backoff's
    # most, which caps its doubling) asks the provider again at once, so
    # above 0.
    "jwks_endpoint_refresh_ms": at_least(1),
    "jwks_endpoint_retry_backoff_ms": at_least(1),
    "jwks_endpoint_retry_backoff_max_ms": at_least(1),
    "jwks_endpoint_refresh_min_interval_ms": at_least(0),
    "clock_skew_seconds": count(0),
}
"""OAuthBearerConfig's numbers ([server]'s sasl.oauthbearer.*)."""

OAUTH_TEXTS: dict[str, Text] = {
    "jwks_endpoint_url": Text(optional=True),  # and an http://, https:// or file:// URL
    "expected_audience": Text(listed=True),  # none: not checked
    "expected_issuer": Text(optional=True),
    "sub_claim_name": Text(nonempty=True),  # a claim's name
    "scope_claim_name": Text(nonempty=True),
}
"""OAuthBearerConfig's strings."""

OAUTH_FLAGS = ("unsecured",)
"""OAuthBearerConfig's flags."""

CONNECTION_RANGES: dict[str, Range] = {
    "max_connections": at_least(1, most=100_000),
    "max_connections_per_address": at_least(1, most=100_000, optional=True),
    "idle_timeout_s": Range(least=0.1, most=3600, integer=False),
}
"""The bounds each HTTP listener puts on its connections (engine/server/http_limits.py)."""


LISTEN_PORT = "listen's port"
"""How an HTTP listener's port is named when it is refused."""


def check_listen(listen: object) -> None:
    """Raises ConfigOutOfRange when an HTTP listener's ``listen`` is no
    (host, port) pair, or names a port no socket binds: refused when the
    config is made, in the words a file's ``listen = "host:port"`` gets
    from parse_address, rather than by the bind when the listener starts."""
    if listen is None:
        return
    if not (isinstance(listen, tuple) and len(listen) == 2 and isinstance(listen[0], str)):
        raise ConfigOutOfRange("listen", listen, "a (host, port) pair, or unset")
    check_range(LISTEN_PORT, listen[1], SERVER_RANGES["port"])


HTTP_RANGES: dict[str, Range] = {
    "object_store_window_s": Range(least=0.1, most=3600, integer=False),
    "probe_timeout_s": Range(least=0.1, most=60, integer=False),
    **CONNECTION_RANGES,
}
"""HttpConfig's numbers (the [http] table)."""

REGISTRY_RANGES: dict[str, Range] = {
    "max_request_bytes": at_least(1024, most=1024**3),  # a body is read whole
    "body_timeout_s": Range(least=0.1, most=3600, integer=False),
    **CONNECTION_RANGES,
}
"""RegistryConfig's numbers (the [schema_registry] table)."""

REGISTRY_TEXTS: dict[str, Text] = {
    "authentication": choice("auto", "basic", "none"),
}
"""RegistryConfig's strings (the [schema_registry] table)."""
