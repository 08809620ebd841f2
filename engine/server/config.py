"""The server's settings: where it listens, what it advertises, and the
limits that keep one client from taking the process down.

They can come from a TOML file (``tidelog serve --config tidelog.toml``)::

    [server]
    listen = "127.0.0.1:9092"
    advertised = "myhost:9092"       # what Metadata tells clients to reach
    node_id = 1
    max_request_bytes = 104857600     # Kafka's socket.request.max.bytes
    max_connection_inflight_bytes = 67108864
    max_inflight_bytes = 536870912
    "max.connections" = 10000         # Kafka's names; also max_connections, and so on
    "max.connections.per.ip" = 1000
    "connections.max.idle.ms" = 600000
    "connections.partial.request.timeout.ms" = 30000
    "max.incremental.fetch.session.cache.slots" = 1000   # 0: no fetch sessions
    max_incremental_fetch_session_partitions = 10000
    "fetch.max.bytes" = 57671680      # the most record data one Fetch answer carries
    "max.request.partition.size.limit" = 2000   # partitions of one DescribeTopicPartitions answer
    authorizer = "acl"                # Kafka's authorizer.class.name; "" (default): none
    "super.users" = ["User:admin"]
    "allow.everyone.if.no.acl.found" = false

    # Several listeners, each with its security protocol (docs/server.md, Security):
    listeners = "PLAINTEXT://127.0.0.1:9092,SASL_SSL://0.0.0.0:9093"
    "advertised.listeners" = "PLAINTEXT://127.0.0.1:9092,SASL_SSL://myhost:9093"
    "sasl.enabled.mechanisms" = "SCRAM-SHA-256,SCRAM-SHA-512,PLAIN"
    "listener.name.sasl_ssl.sasl.enabled.mechanisms" = "SCRAM-SHA-512"   # one listener's
    "ssl.keystore.location" = "/etc/tidelog/server.pem"   # PEM: certificate chain, key
    "ssl.key.password.file" = "/etc/tidelog/key-password"
    "ssl.truststore.location" = "/etc/tidelog/ca.pem"     # CAs of client certificates
    "ssl.client.auth" = "required"                          # or requested, none
    "ssl.principal.mapping.rules" = "RULE:^CN=(.*?),.*$/$1/L,DEFAULT"
    "connections.max.reauth.ms" = 3600000
    "connection.failed.authentication.delay.ms" = 100     # the close after a failed login
    "sasl.password.check.threads" = 1     # PLAIN passwords checked off the event loop,
    "sasl.password.check.queue.size" = 64 # and at most this many waiting (then closed),
    "sasl.password.check.queue.per.address" = 16   # this many from one address (default: a quarter)
    "sasl.oauthbearer.jwks.endpoint.url" = "https://idp.example/jwks"   # when OAUTHBEARER is on
    "sasl.oauthbearer.expected.audience" = "tidelog"      # and the other sasl.oauthbearer.*

    log_format = "json"              # or "text" (the default)

    [http]                            # /metrics, /healthz, /readyz (docs/operations.md)
    listen = "127.0.0.1:9644"         # off unless set here or with --http
    object_store_window_s = 10

    [engine]
    data_dir = "./tidelog-data"
    object_store = "file:///var/lib/tidelog/objects"
    auto_create_topics = true
    default_partitions = 1
    group_initial_rebalance_delay_ms = 3000   # any EngineConfig, GroupConfig or
    transaction_max_timeout_ms = 900000       # TransactionConfig setting, by its name

    [topic_defaults]                  # a broker's log.* settings, by topic config name
    "retention.ms" = "604800000"

    [store]                           # the stream store's settings (StreamStoreConfig)
    upload_bytes = 33554432
    durability = "fsync"

Command-line flags override the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, cast

from engine.config import normalize
from engine.credentials import MECHANISMS
from engine.delegation_tokens import (
    DEFAULT_EXPIRY_CHECK_INTERVAL_MS,
    DEFAULT_EXPIRY_TIME_MS,
    DEFAULT_MAX_LIFETIME_MS,
    DelegationTokenConfig,
)
from engine.engine import EngineConfig
from engine.errors import InvalidConfig
from engine.groups.config import GroupConfig
from engine.mirror.settings import settings_from_table
from engine.server.address_shares import default_share
from engine.server.config_ranges import (
    LISTEN_PORT,
    SERVER_RANGES,
    SERVER_TEXTS,
    check_listener,
)
from engine.server.engine_ranges import check_engine_ranges
from engine.server.http_config import DEFAULT_HTTP_PORT, HttpConfig
from engine.server.http_config import KEYS as HTTP_KEYS
from engine.server.listeners import Listener, parse_listeners
from engine.server.registry_config import DEFAULT_REGISTRY_PORT, KEYS, RegistryConfig
from engine.server.sasl.oauth_config import PREFIX as OAUTH_PREFIX
from engine.server.sasl.oauth_config import OAuthBearerConfig
from engine.server.sasl.oauthbearer import OAUTHBEARER
from engine.tables.settings import tables_settings
from engine.transactions.config import TransactionConfig
from s3stream import StreamStoreConfig
from s3stream.errors import ConfigOutOfRange
from s3stream.ranges import check_range, check_ranges, check_text, check_texts


class ConfigFileError(ValueError):
    """A config file that cannot be used, with what is wrong in it."""


MIRROR_CHECK_SOURCE = "127.0.0.1:9092"
"""The source a [mirror] table is checked with when its file is read
(``tidelog serve`` gives it its own listener when it starts the mirror)."""


def parse_address(text: str, *, default_port: int = 9092, setting: str = "port") -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6) into its parts; a port out of
    range is refused as ServerConfig refuses its ``setting``."""
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, default_port
    host = host.strip("[]")
    if not host:
        raise ValueError(
            f"{text!r} names no host: write 127.0.0.1:{port} for this machine only,"
            f" or 0.0.0.0:{port} to mean every interface"
        )
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"{text!r} is not host:port") from None
    check_range(setting, number, SERVER_RANGES["port"])
    return host, number


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 9092
    advertised_host: str | None = None
    """What Metadata returns; the listen address if unset."""
    advertised_port: int | None = None
    node_id: int = 1
    max_request_bytes: int = 100 * 1024 * 1024
    """A request larger than this closes its connection (socket.request.max.bytes)."""
    max_connection_inflight_bytes: int = 64 * 1024 * 1024
    """Request bytes one connection may have unanswered before the server
    stops reading from it."""
    max_inflight_bytes: int = 512 * 1024 * 1024
    """The same limit over all connections."""
    max_connections: int = 10_000
    """Connections open at once (Kafka's max.connections); one more is
    accepted and closed at once."""
    max_connections_per_ip: int = 2**31 - 1
    """Connections open at once from one address (max.connections.per.ip;
    unlimited by default, as in Kafka)."""
    connections_max_idle_ms: int = 600_000
    """A connection with no request in flight that reads and writes nothing
    for this long is closed (Kafka's connections.max.idle.ms)."""
    connections_partial_request_timeout_ms: int = 30_000
    """A request whose bytes have not all arrived this long after its first
    one closes its connection: a client that stalls or trickles a request
    cannot hold a buffer and a connection for ever. As long as a Kafka
    client's own request.timeout.ms, after which it gives up anyway."""
    connection_failed_authentication_delay_ms: int = 100
    """How long after its SASL_AUTHENTICATION_FAILED answer a connection is
    closed (Kafka's connection.failed.authentication.delay.ms), unless the
    client closes it first: the answer arrives before the close."""
    sasl_password_check_threads: int = 1
    """Threads that check SASL/PLAIN passwords, off the event loop (a
    check derives the password's keys: 1-10 ms of CPU)."""
    sasl_password_check_queue_size: int = 64
    """PLAIN logins that may wait for one of those threads; one more is
    not answered and its connection is closed, so that a flood of logins
    is never queued without bound (the client connects again later)."""
    sasl_password_check_queue_per_address: int | None = None
    """PLAIN logins from one client address that may be checked or wait at
    once; one more is closed as one past the queue is, so that one address
    flooding logins leaves the rest of the queue to the others. None: a
    quarter of the queue, at least 1 (see password_checks_per_address)."""
    fetch_max_bytes: int = 55 * 1024 * 1024
    """The most record data one Fetch response carries, whatever larger
    max_bytes the request asks for (Kafka's fetch.max.bytes, its default; as
    there, the first batch of the first partition with data goes whole even
    when larger). A request's max_bytes is the peer's claim, and the server
    builds the response before a byte of it is read."""
    max_request_partition_size_limit: int = 2000
    """The most partitions one DescribeTopicPartitions answer describes,
    whatever larger response_partition_limit the request asks for (Kafka's
    max.request.partition.size.limit, its default): the request's figure
    is the peer's claim, and the answer is built before it is read."""
    max_incremental_fetch_session_cache_slots: int = 1000
    """Incremental fetch sessions (KIP-227) held at once, Kafka's
    max.incremental.fetch.session.cache.slots; 0 turns sessions off, and
    clients send full fetches."""
    min_incremental_fetch_session_eviction_ms: int = 120_000
    """How long a session is safe from eviction by a larger one, and how
    long unused before any new session may take its slot (Kafka's
    MIN_INCREMENTAL_FETCH_SESSION_EVICTION_MS)."""
    max_incremental_fetch_session_partitions: int = 10_000
    """Partitions one session may hold (Kafka has no such bound: its
    sessions are bounded only by request size). A fetch over more gets no
    session. With the slots, it bounds the cache at slots x this many
    partitions, about 300 bytes each: a consumer reading more partitions
    than this from one broker is past any deployment one process serves,
    and it still fetches, only not incrementally."""
    listeners: tuple[Listener, ...] = ()
    """Where to listen, each with its security protocol; none: one PLAINTEXT
    listener at host:port (advertised at advertised_host:advertised_port)."""
    advertised_listeners: tuple[Listener, ...] = ()
    """What Metadata tells a client that came in on each listener; a
    listener not named here is advertised at its own address."""
    sasl_enabled_mechanisms: tuple[str, ...] = MECHANISMS
    """The SASL mechanisms the SASL_* listeners accept."""
    listener_sasl_enabled_mechanisms: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """Per listener name, mechanisms in place of sasl_enabled_mechanisms
    (Kafka's listener.name.<name>.sasl.enabled.mechanisms)."""
    oauthbearer: OAuthBearerConfig = field(default_factory=OAuthBearerConfig)
    """How OAUTHBEARER tokens are validated (Kafka's sasl.oauthbearer.*)."""
    ssl_keystore_location: str | None = None
    """A PEM file with the server's certificate chain and its private key."""
    ssl_key_password_file: str | None = None
    """A file holding the private key's password, if it is encrypted."""
    ssl_truststore_location: str | None = None
    """A PEM file of the CAs that sign client certificates (for ssl.client.auth)."""
    ssl_client_auth: str = "none"
    """required, requested or none: whether TLS clients present a certificate."""
    ssl_principal_mapping_rules: str = "DEFAULT"
    """How a client certificate's subject becomes a user name (Kafka's rules)."""
    delegation_token_secret_key_file: str | None = None
    """A file whose first line is Kafka's delegation.token.secret.key, the
    secret tokens' HMACs are made with: none, no delegation tokens."""
    delegation_token_expiry_time_ms: int = DEFAULT_EXPIRY_TIME_MS
    """How long a token lives unless renewed (Kafka's, 24 h)."""
    delegation_token_max_lifetime_ms: int = DEFAULT_MAX_LIFETIME_MS
    """No renewal takes a token past this from its creation (Kafka's, 7 days)."""
    delegation_token_expiry_check_interval_ms: int = DEFAULT_EXPIRY_CHECK_INTERVAL_MS
    """How often expired tokens are removed from the catalog (Kafka's, 1 h)."""
    connections_max_reauth_ms: int = 0
    """A SASL session's lifetime (KIP-368): a client re-authenticates
    within it, else its connection is closed; 0 means for ever."""
    shutdown_timeout_s: float = 30.0
    """How long a clean shutdown waits for requests in flight."""
    activity_log_interval_s: float = 60.0
    """How often the log gets a line of what was served and uploaded (when
    anything was)."""
    log_format: str = "text"
    """``text``: one line for people; ``json``: one JSON object per line
    (engine/log_json.py, docs/operations.md)."""

    authorizer: str = ""
    """Kafka's authorizer.class.name: "" serves every request to everyone;
    "acl" decides by the ACLs stored in the catalog (docs/server.md,
    Authorization)."""
    super_users: tuple[str, ...] = ()
    """Kafka's super.users: principals (``User:name``) the ACL authorizer
    always allows."""
    allow_everyone_if_no_acl_found: bool = False
    """Kafka's allow.everyone.if.no.acl.found: whether the ACL authorizer
    allows a resource that no ACL names."""

    def __post_init__(self) -> None:
        check_texts(self, SERVER_TEXTS)
        check_ranges(self, SERVER_RANGES)
        for setting, named in (
            ("listeners", self.listeners),
            ("advertised_listeners", self.advertised_listeners),
        ):
            for listener in named:
                check_listener(setting, listener)
        listed = SERVER_TEXTS["sasl_enabled_mechanisms"]
        per_listener = []
        for name, mechanisms in self.listener_sasl_enabled_mechanisms:
            check_text(f"listener.name.{name.lower()}.sasl.enabled.mechanisms", mechanisms, listed)
            # Kafka's "A,B" kept as its names, as check_texts keeps
            # sasl_enabled_mechanisms: a string kept whole would be read
            # letter by letter where the handshake asks for a mechanism.
            per_listener.append((name, cast("tuple[str, ...]", listed.names_of(mechanisms))))
        object.__setattr__(self, "listener_sasl_enabled_mechanisms", tuple(per_listener))
        uses_oauthbearer = any(
            OAUTHBEARER in self.mechanisms(listener)
            for listener in self.effective_listeners
            if listener.protocol.uses_sasl
        )
        if uses_oauthbearer and not self.oauthbearer.configured:
            raise ValueError(
                "OAUTHBEARER is enabled but no token validator is: set"
                " sasl.oauthbearer.jwks.endpoint.url (or sasl.oauthbearer.unsecured = true,"
                " for development only)"
            )
        names = {listener.name for listener in self.effective_listeners}
        for advertised in self.advertised_listeners:
            if advertised.name not in names:
                raise ValueError(f"advertised listener {advertised} names no listener")
        for name, _ in self.listener_sasl_enabled_mechanisms:
            if name not in names:
                raise ValueError(
                    f"listener.name.{name.lower()}.sasl.enabled.mechanisms names no listener"
                )
        if any(listener.protocol.uses_tls for listener in self.effective_listeners) and (
            not self.ssl_keystore_location
        ):
            raise ValueError("an SSL or SASL_SSL listener needs ssl.keystore.location")

    def delegation_tokens(self) -> DelegationTokenConfig:
        """The engine's delegation.token.* settings, the secret read from its
        file (OSError when it cannot be read, ValueError when it is empty)."""
        secret = None
        if self.delegation_token_secret_key_file:
            lines = Path(self.delegation_token_secret_key_file).read_text().splitlines()
            secret = lines[0] if lines else ""
            if not secret:
                raise ValueError(
                    f"delegation.token.secret.key.file {self.delegation_token_secret_key_file}"
                    " holds no secret on its first line"
                )
        return DelegationTokenConfig(
            secret,
            self.delegation_token_expiry_time_ms,
            self.delegation_token_max_lifetime_ms,
            self.delegation_token_expiry_check_interval_ms,
        )

    @property
    def password_checks_per_address(self) -> int:
        """sasl.password.check.queue.per.address, or its default: a quarter
        of the queue, and at least one login, else a queue of fewer than
        four would let no address in."""
        share = self.sasl_password_check_queue_per_address
        return default_share(self.sasl_password_check_queue_size) if share is None else share

    @property
    def effective_listeners(self) -> tuple[Listener, ...]:
        """The listeners, or the one PLAINTEXT listener host:port stands for."""
        return self.listeners or (Listener("PLAINTEXT", self.host, self.port),)

    def mechanisms(self, listener: Listener) -> tuple[str, ...]:
        """The SASL mechanisms ``listener`` accepts."""
        return dict(self.listener_sasl_enabled_mechanisms).get(
            listener.name, self.sasl_enabled_mechanisms
        )

    def advertised(self, listener: Listener, bound_port: int) -> tuple[str, int]:
        """Where clients that came in on ``listener`` are told to reach it."""
        for advertised in self.advertised_listeners:
            if advertised.name == listener.name:
                return advertised.host, advertised.port or bound_port
        if not self.listeners:
            return self.advertised_host or self.host, self.advertised_port or bound_port
        return listener.host, bound_port


def listener_settings(table: dict[str, Any]) -> dict[str, Any]:
    """The [server] table's security settings in ServerConfig's types
    (lists of listeners and of mechanisms are written as Kafka's strings)."""
    settings = dict(table)
    oauthbearer = OAuthBearerConfig.take(settings)
    if oauthbearer is not None:
        settings["oauthbearer"] = oauthbearer
    per_listener = []
    for key in list(settings):
        found = _PER_LISTENER_MECHANISMS.fullmatch(key)
        if found is not None:
            # "A,B" or ["A", "B"], read (or refused) by ServerConfig as it
            # reads sasl.enabled.mechanisms
            per_listener.append((found[1].upper(), settings.pop(key)))
    if per_listener:
        settings["listener_sasl_enabled_mechanisms"] = tuple(per_listener)
    for key in ("listeners", "advertised_listeners"):
        if key in settings:
            settings[key] = parse_listeners(str(settings[key]))
    return settings


_PER_LISTENER_MECHANISMS = re.compile(r"listener_name_(\w+?)_sasl_enabled_mechanisms")
"""listener.name.<name>.sasl.enabled.mechanisms, its dots made underscores."""


@dataclass(frozen=True)
class FileConfig:
    """Everything a config file may set."""

    server: ServerConfig = field(default_factory=ServerConfig)
    data_dir: str | None = None
    object_store: str | None = None
    auto_create_topics: bool | None = None
    default_partitions: int | None = None
    topic_defaults: dict[str, str] = field(default_factory=dict)
    store: StreamStoreConfig = field(default_factory=StreamStoreConfig)
    engine: dict[str, Any] = field(default_factory=dict)
    """Other EngineConfig arguments, by field name: its own settings, and
    ``groups`` and ``transactions`` when the file sets any of theirs."""
    schema_registry: RegistryConfig = field(default_factory=RegistryConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    mirror: dict[str, Any] | None = None
    """The [mirror] table as written (engine/mirror/settings.py reads it)."""


_PLAIN_TYPES: dict[str, type] = {
    "int": int,
    "float": float,
    "bool": bool,
    "str": str,
    # A list of names (Kafka's LIST): a TOML array or one comma-separated
    # string, whose type is its config's to check, as a string's is.
    "tuple[str, ...]": str,
}
_NESTED: dict[str, type[GroupConfig] | type[TransactionConfig]] = {
    "groups": GroupConfig,
    "transactions": TransactionConfig,
}
"""EngineConfig's nested settings, whose fields the [engine] table sets by
their own (Kafka's) names."""


def _plain_settings(config: type[Any], skip: tuple[str, ...] = ()) -> dict[str, type]:
    return {
        f.name: _PLAIN_TYPES[str(f.type)]
        for f in fields(config)
        if str(f.type) in _PLAIN_TYPES and f.name not in skip
    }


_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _check_types(table: dict[str, Any], types: dict[str, type]) -> None:
    """Refuses a value of the wrong TOML type for its setting (an integer
    serves where a number is asked for): a start with ``upload_bytes =
    "32MiB"`` would otherwise serve, and fail at its first upload. A
    string setting is left to its config, which refuses any other type in
    the words it has for a string out of its set (its table of strings)."""
    for key, value in table.items():
        wanted = types.get(key)
        if wanted in (None, str) or type(value) is wanted:
            continue
        if wanted is float and type(value) is int:
            continue
        raise ConfigOutOfRange(key, value, _TYPE_NAMES[wanted])


def _as_written(error: Exception, written: dict[str, str]) -> Exception:
    """``error`` naming its setting as the file wrote it: the config knows
    ``ssl_client_auth`` where the file (and docs/server.md) says
    ``ssl.client.auth``, a key the reader would look for in vain; and a
    listener's field by the key that holds it (``advertised.listeners'
    port``)."""
    if not isinstance(error, ConfigOutOfRange):
        return error
    key, quote, field = error.setting.partition("'")
    if key in written and written[key] != key:
        return error.named(written[key] + quote + field)
    return error


_ENGINE_APART: dict[str, type] = {"auto_create_topics": bool, "default_partitions": int}
"""The [engine] settings FileConfig keeps apart from ``engine``, and their types."""
_ADDRESSES = ("data_dir", "object_store")
"""The [engine] table's paths and URLs, kept apart too (flags override them)."""
_SERVER_ADDRESSES = ("listen", "advertised", "listeners", "advertised_listeners")
"""The [server] table's addresses, each a string parsed into ServerConfig's fields."""
_ENGINE_SETTINGS = _plain_settings(EngineConfig, tuple(_ENGINE_APART))
"""EngineConfig's plain settings (numbers, flags, names) and their types."""
_NESTED_SETTINGS = {name: _plain_settings(config) for name, config in _NESTED.items()}
_ENGINE_SETTINGS.update({k: v for nested in _NESTED_SETTINGS.values() for k, v in nested.items()})
_SERVER_INTERNAL = {
    "host",
    "port",
    "advertised_host",
    "advertised_port",
    "oauthbearer",
    "listener_sasl_enabled_mechanisms",
}
"""ServerConfig fields a file sets by other names: listen, advertised,
sasl.oauthbearer.* and listener.name.<name>.sasl.enabled.mechanisms."""
_SERVER_KEYS = {f.name for f in fields(ServerConfig)} - _SERVER_INTERNAL | {"listen", "advertised"}
_SERVER_TYPES = _plain_settings(ServerConfig)
_OAUTH_KEYS = {OAUTH_PREFIX + f.name for f in fields(OAuthBearerConfig)}
"""[server]'s sasl.oauthbearer.* keys, dots made underscores."""
_ENGINE_KEYS = {"data_dir", "object_store", "auto_create_topics", "default_partitions"}
_ENGINE_KEYS |= set(_ENGINE_SETTINGS)
_STORE_KEYS = {f.name for f in fields(StreamStoreConfig)}
_STORE_TYPES = {**_plain_settings(StreamStoreConfig), "durability": str}


def _registry_settings(table: dict[str, Any]) -> RegistryConfig:
    unknown = set(table) - KEYS
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}")
    _check_types(table, _plain_settings(RegistryConfig))
    listen = table.pop("listen", None)
    if listen is not None and not isinstance(listen, str):
        raise ValueError("listen must be a string, host:port")
    address = (
        parse_address(listen, default_port=DEFAULT_REGISTRY_PORT, setting=LISTEN_PORT)
        if listen
        else None
    )
    return RegistryConfig(listen=address, **table)


def _http_settings(table: dict[str, Any]) -> HttpConfig:
    unknown = set(table) - HTTP_KEYS
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}")
    _check_types(table, _plain_settings(HttpConfig))
    listen = table.pop("listen", None)
    if listen is not None and not isinstance(listen, str):
        raise ValueError("listen must be a string, host:port")
    address = (
        parse_address(listen, default_port=DEFAULT_HTTP_PORT, setting=LISTEN_PORT)
        if listen
        else None
    )
    return HttpConfig(listen=address, **table)


def load_config_file(path: str | Path) -> FileConfig:
    import tomllib  # noqa: PLC0415  (only a start with --config reads TOML)

    try:
        document = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ConfigFileError(f"{path}: {error}") from error
    sections = {
        "server",
        "engine",
        "topic_defaults",
        "store",
        "schema_registry",
        "http",
        "mirror",
        "tables",
    }
    unknown = set(document) - sections
    if unknown:
        raise ConfigFileError(f"{path}: unknown sections {sorted(unknown)}")
    for name, section in document.items():
        if not isinstance(section, dict):  # `server = 1`, say, above every [table]
            raise ConfigFileError(f"{path}: {name} must be a table, [{name}], not {section!r}")
    # Kafka's dotted names ("max.connections") name the same settings.
    server_table: dict[str, Any] = {
        str(key).replace(".", "_"): value for key, value in document.get("server", {}).items()
    }
    # Each setting as the file spells it, for a refusal to name.
    written = {str(key).replace(".", "_"): str(key) for key in document.get("server", {})}
    engine_table: dict[str, Any] = dict(document.get("engine", {}))
    store_table: dict[str, Any] = dict(document.get("store", {}))
    for table, known, name in (
        (server_table, _SERVER_KEYS, "server"),
        (engine_table, _ENGINE_KEYS, "engine"),
        (store_table, _STORE_KEYS, "store"),
    ):
        extra = {
            key
            for key in set(table) - known
            if name != "server"
            or not (_PER_LISTENER_MECHANISMS.fullmatch(key) or key in _OAUTH_KEYS)
        }
        if extra:
            # [server]'s keys as the file wrote them, dotted or not
            named = sorted(written.get(key, key) if name == "server" else key for key in extra)
            raise ConfigFileError(f"{path}: unknown keys in [{name}]: {named}")
    server = ServerConfig()
    try:
        _check_types(server_table, _SERVER_TYPES)
        for key in _SERVER_ADDRESSES:
            if key in server_table and not isinstance(server_table[key], str):
                # A ConfigOutOfRange, which _as_written names as the file
                # wrote it ("advertised.listeners").
                raise ConfigOutOfRange(key, server_table[key], "a string")
        if "listen" in server_table:
            host, port = parse_address(server_table.pop("listen"))
            server = replace(server, host=host, port=port)
        if "advertised" in server_table:
            host, port = parse_address(server_table.pop("advertised"), setting="advertised_port")
            server = replace(server, advertised_host=host, advertised_port=port)
        server = replace(server, **listener_settings(server_table))
    except (TypeError, ValueError) as error:
        raise ConfigFileError(f"{path}: [server]: {_as_written(error, written)}") from error
    try:
        _check_types(store_table, _STORE_TYPES)
        # durability too is refused by the config itself, as from Python
        store = StreamStoreConfig(**store_table)
    except (TypeError, ValueError) as error:
        raise ConfigFileError(f"{path}: [store]: {error}") from error
    try:
        registry = _registry_settings(dict(document.get("schema_registry", {})))
    except (TypeError, ValueError) as error:
        raise ConfigFileError(f"{path}: [schema_registry]: {error}") from error
    try:
        http = _http_settings(dict(document.get("http", {})))
    except (TypeError, ValueError) as error:
        raise ConfigFileError(f"{path}: [http]: {error}") from error
    topic_defaults = {str(k): str(v) for k, v in document.get("topic_defaults", {}).items()}
    try:
        for name, value in topic_defaults.items():
            normalize(name, value)
    except InvalidConfig as error:
        raise ConfigFileError(f"{path}: [topic_defaults]: {error}") from error
    engine = {k: engine_table.pop(k) for k in list(engine_table) if k in _ENGINE_SETTINGS}
    try:
        _check_types(engine, _ENGINE_SETTINGS)
        check_engine_ranges(engine)
        # Read apart from the other settings (kept on FileConfig, where
        # --no-auto-create-topics overrides one), checked the same: a
        # string "no" would otherwise turn auto-creation on.
        apart = {k: engine_table[k] for k in _ENGINE_APART if k in engine_table}
        _check_types(apart, _ENGINE_APART)
        check_engine_ranges(apart)
        for key in _ADDRESSES:
            if key in engine_table and not isinstance(engine_table[key], str):
                raise ConfigOutOfRange(key, engine_table[key], "a string")
    except ValueError as error:
        raise ConfigFileError(f"{path}: [engine]: {error}") from error
    for nested, config in _NESTED.items():
        settings = {k: engine.pop(k) for k in list(engine) if k in _NESTED_SETTINGS[nested]}
        if settings:
            try:  # GroupConfig's orders and migration policy: refused by the config itself
                engine[nested] = config(**settings)
            except ValueError as error:
                raise ConfigFileError(f"{path}: [engine]: {error}") from error
    if "tables" in document:
        try:
            engine["tables"] = tables_settings(dict(document["tables"]))
        except (TypeError, ValueError) as error:
            raise ConfigFileError(f"{path}: [tables]: {error}") from error
    if "mirror" in document:
        try:
            # Read as `tidelog serve` reads it, a stand-in for its own
            # listener as the cluster mirrored from: every command reading
            # the file refuses it at once, in MirrorSettings' words.
            settings_from_table(dict(document["mirror"]), MIRROR_CHECK_SOURCE)
        except ValueError as error:
            raise ConfigFileError(f"{path}: [mirror]: {error}") from error
    return FileConfig(
        server=server,
        topic_defaults=topic_defaults,
        store=store,
        engine=engine,
        schema_registry=registry,
        http=http,
        mirror=dict(document["mirror"]) if "mirror" in document else None,
        **engine_table,
    )
