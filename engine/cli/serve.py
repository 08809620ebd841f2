"""``tidelog serve``: the Kafka wire server over an engine, in one process.

With no flags it runs on the embedded default: a local data directory
(``./tidelog-data``), a local object store inside it, and 127.0.0.1:9092.
SIGTERM or SIGINT shut it down cleanly: stop accepting, finish the requests
in flight, then close the engine (flush the WAL, upload, checkpoint). The
last line says whether everything was uploaded; if appends are still only
in the local WAL (the object store unreachable, or another server took the
storage over), it says how many and why, and the exit status is
``EXIT_NOT_UPLOADED``, since that data directory must not be discarded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import logging
import resource
import signal
import sys
from dataclasses import replace
from typing import TYPE_CHECKING, Any

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency, except on Windows
    uvloop = None  # type: ignore[assignment]

from engine import refusal
from engine.authorization import AuthorizationConfig
from engine.cli.help_format import HelpFormatter, examples
from engine.cli.process_restored import process_restored
from engine.engine import Engine, EngineConfig
from engine.gc_pause import collecting_less_often_while_serving, what_start_made_frozen
from engine.log_json import use_json_lines
from engine.log_limit import limit_repeated_lines
from engine.server.config import (
    ConfigFileError,
    FileConfig,
    ServerConfig,
    load_config_file,
    parse_address,
)
from engine.server.http_config import DEFAULT_HTTP_PORT, HttpConfig
from engine.server.listeners import parse_listeners
from engine.server.registry_config import DEFAULT_REGISTRY_PORT, RegistryConfig
from s3stream.store import check_scheme, redact_url, secret_parameters

if TYPE_CHECKING:
    from collections.abc import Callable

    from engine.server.operations_http import OperationsServer
    from engine.server.sasl.password_checks import PasswordChecks
    from engine.server.schema_registry import SchemaRegistryServer
    from engine.server.server import Server

    RegistryFactory = Callable[
        [Engine, RegistryConfig, ServerConfig, Callable[[], PasswordChecks]],
        SchemaRegistryServer,
    ]

log = logging.getLogger("tidelog.serve")

DEFAULT_DATA_DIR = "./tidelog-data"
EXIT_NOT_UPLOADED = 3
"""A clean stop that left acknowledged appends only in the local WAL."""


def add_command(commands: Any) -> None:
    parser = commands.add_parser(
        "serve",
        help="serve the Kafka protocol",
        description="Serve the Kafka wire protocol over a local engine.",
        epilog=examples(
            "tidelog serve --data-dir ./data --listen 127.0.0.1:9092 --http",
            "tidelog serve --config tidelog.toml --log-level INFO,tidelog.stalls=DEBUG",
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--listen", help="host:port to listen on (default 127.0.0.1:9092)")
    parser.add_argument("--advertised", help="host:port that Metadata tells clients to use")
    parser.add_argument(
        "--listeners",
        help="listeners as Kafka names them, e.g. PLAINTEXT://127.0.0.1:9092,SASL_SSL://0.0.0.0:9093"
        " (replaces --listen; TLS and SASL settings come from --config)",
    )
    parser.add_argument(
        "--advertised-listeners",
        help="what Metadata tells clients of each listener, e.g. SASL_SSL://myhost:9093",
    )
    parser.add_argument("--data-dir", help=f"local data directory (default {DEFAULT_DATA_DIR})")
    parser.add_argument(
        "--object-store",
        help="file:///path or s3://bucket/prefix?endpoint=URL (default: DATA_DIR/objects)",
    )
    parser.add_argument("--config", help="a TOML config file (flags override it)")
    parser.add_argument("--node-id", type=int, help="this broker's node id (default 1)")
    parser.add_argument(
        "--no-auto-create-topics",
        action="store_true",
        help="answer UNKNOWN_TOPIC_OR_PARTITION instead of creating topics on first use",
    )
    parser.add_argument(
        "--schema-registry",
        nargs="?",
        const=f"127.0.0.1:{DEFAULT_REGISTRY_PORT}",
        metavar="HOST:PORT",
        help="serve the Schema Registry API (Confluent's) on HOST:PORT"
        f" (default 127.0.0.1:{DEFAULT_REGISTRY_PORT}; off unless asked for here or in --config)",
    )
    parser.add_argument(
        "--http",
        nargs="?",
        const=f"127.0.0.1:{DEFAULT_HTTP_PORT}",
        metavar="HOST:PORT",
        help="serve /metrics, /healthz and /readyz on HOST:PORT"
        f" (default 127.0.0.1:{DEFAULT_HTTP_PORT}; off unless asked for here or in --config)",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        help="DEBUG, INFO, WARNING or ERROR, then LOGGER=LEVEL for single loggers,"
        " comma-separated (e.g. INFO,tidelog.stalls=DEBUG)",
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        help="text (default) or json: one JSON object per line",
    )
    parser.set_defaults(run=run)


def settings(args: argparse.Namespace) -> tuple[FileConfig, ServerConfig]:
    """The file's settings with the command line's on top."""
    file = load_config_file(args.config) if args.config else FileConfig()
    server = file.server
    if args.listen:
        host, port = parse_address(args.listen)
        server = replace(server, host=host, port=port)
    if args.advertised:
        host, port = parse_address(args.advertised, setting="advertised_port")
        server = replace(server, advertised_host=host, advertised_port=port)
    if args.listeners:
        server = replace(server, listeners=parse_listeners(args.listeners))
    if args.advertised_listeners:
        server = replace(server, advertised_listeners=parse_listeners(args.advertised_listeners))
    if args.node_id is not None:
        server = replace(server, node_id=args.node_id)
    if getattr(args, "schema_registry", None):
        address = parse_address(args.schema_registry, default_port=DEFAULT_REGISTRY_PORT)
        file = replace(file, schema_registry=replace(file.schema_registry, listen=address))
    if getattr(args, "http", None):
        address = parse_address(args.http, default_port=DEFAULT_HTTP_PORT)
        file = replace(file, http=replace(file.http, listen=address))
    if getattr(args, "log_format", None):
        server = replace(server, log_format=args.log_format)
    return file, server


def keep_freed_memory_for_reuse() -> bool:
    """Has glibc serve large allocations from its heap and keep freed heap
    memory, instead of mapping fresh pages for each and unmapping them on
    free (its default above 128 KiB, adjusted as it goes).

    Produce requests are read into buffers of their own that the log cache
    keeps until upload; with fresh pages for each, every request paid a page
    fault per 4 KiB, a third of the server's time at a few hundred MB/s on a
    virtual machine. With these settings freed buffers are reused. Returns
    whether the settings took (glibc only).
    """
    try:
        # The process's own symbols, the C library's among them: finding
        # libc by name (ctypes.util.find_library) runs ldconfig, tens of
        # milliseconds of every start.
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    return bool(
        mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
    )


_FILES_BESIDE_CONNECTIONS = 1024
"""Room for the WAL's segments, object-store sockets and the like."""


def _allow_open_files(max_connections: int) -> None:
    """Raises the soft limit on open files towards ``max_connections`` and
    room besides (as far as the hard limit allows): past the soft limit,
    new connections fail in accept() instead of meeting max.connections."""
    wanted = max_connections + _FILES_BESIDE_CONNECTIONS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
    if soft != resource.RLIM_INFINITY and soft < wanted:
        log.warning(
            "max.connections is %d, but this process may open only %d files:"
            " connections beyond about %d will fail to be accepted",
            max_connections,
            soft,
            max(0, soft - _FILES_BESIDE_CONNECTIONS),
        )


def _http_connections(registry: RegistryConfig | None, http: HttpConfig | None) -> int:
    """The most connections the HTTP listeners that serve keep open."""
    return sum(
        config.max_connections
        for config in (registry, http)
        if config is not None and config.listen is not None
    )


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
_MMAP_THRESHOLD = 32 * 1024 * 1024  # the most glibc allows on 64-bit systems
_TRIM_THRESHOLD = 512 * 1024 * 1024


def log_levels(text: str) -> tuple[str, dict[str, str]]:
    """``--log-level``'s value: the root logger's level, then single
    loggers' as LOGGER=LEVEL, comma-separated. Raises ValueError."""
    root, *named = (part.strip() for part in text.split(","))
    levels: dict[str, str] = {}
    for part in named:
        name, equals, level = part.partition("=")
        if not equals or not name.strip():
            raise ValueError(f"--log-level: {part!r} is not LOGGER=LEVEL")
        levels[name.strip()] = level.strip().upper()
    known = logging.getLevelNamesMapping()  # CRITICAL, ERROR, WARNING (WARN), INFO, DEBUG...
    for level in (root.upper(), *levels.values()):
        if level not in known:
            raise ValueError(f"--log-level: {level!r} is not one of {', '.join(known)}")
    return root.upper(), levels


def run(args: argparse.Namespace) -> int:
    try:
        root_level, logger_levels = log_levels(args.log_level)
    except ValueError as error:
        print(f"tidelog serve: {error}", file=sys.stderr)
        return 2
    # The process may live on after serve returns (a test, a script calling
    # main): its logging and open-files limit are left as serve found them.
    with process_restored() as restored:
        logging.basicConfig(
            level=root_level,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        for name, level in logger_levels.items():
            restored.set_level(name, level)
        return _run_configured(args)


def _run_configured(args: argparse.Namespace) -> int:
    """``run`` once its logging is set up."""
    try:
        file, server_config = settings(args)
    except (ConfigFileError, ValueError) as error:
        limit_repeated_lines()
        log.error("%s", error)
        return 2
    if server_config.log_format == "json":
        use_json_lines()
    limit_repeated_lines()
    try:
        delegation_tokens = server_config.delegation_tokens()
    except (OSError, ValueError) as error:
        log.error("%s", error)
        return 2
    engine_config = EngineConfig(
        auto_create_topics=not args.no_auto_create_topics
        and (file.auto_create_topics if file.auto_create_topics is not None else True),
        default_partitions=file.default_partitions or 1,
        topic_defaults=file.topic_defaults,
        store=file.store,
        # The engine holds the authorizer: the server asks the same one, so
        # embedded clients in this process are refused as connections are.
        authorization=AuthorizationConfig(
            server_config.super_users, server_config.allow_everyone_if_no_acl_found
        )
        if server_config.authorizer == "acl"
        else None,
        delegation_tokens=delegation_tokens,
        **file.engine,
    )
    _allow_open_files(
        server_config.max_connections + _http_connections(file.schema_registry, file.http)
    )
    if not keep_freed_memory_for_reuse():
        log.debug("mallopt is not available: large buffers are mapped afresh")
    data_dir = args.data_dir or file.data_dir or DEFAULT_DATA_DIR
    object_store = args.object_store or file.object_store
    try:
        check_scheme(object_store or "")
    except ValueError as error:
        log.error("%s", error)
        return 2
    runner: Any = asyncio.run if uvloop is None else uvloop.run
    try:
        result: int = runner(
            _serve(
                data_dir,
                object_store,
                engine_config,
                server_config,
                file.schema_registry,
                file.http,
                file.mirror,
            )
        )
    except refusal.REFUSALS as error:
        log.error("cannot serve: %s", refusal.describe(error, data_dir))
        return 1
    return result


async def _serve(
    data_dir: str,
    object_store: str | None,
    engine_config: EngineConfig,
    server_config: ServerConfig,
    registry_config: RegistryConfig | None = None,
    http_config: HttpConfig | None = None,
    mirror_table: dict[str, Any] | None = None,
) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log.info("opening %s (object store: %s)", data_dir, redact_url(object_store or "local"))
    exposed = secret_parameters(object_store or "")
    if exposed:
        log.warning(
            "the object store URL carries %s in clear, where every user of this machine can"
            " read it in the process list: give it in a file (secret_access_key_file=PATH)"
            " or in the environment (AWS_SECRET_ACCESS_KEY)",
            ", ".join(exposed),
        )
    opening = loop.run_in_executor(None, lambda: Engine.open(data_dir, object_store, engine_config))
    try:
        # Loaded while the engine opens, which mostly waits on the disk: the
        # wire server's modules, and the HTTP servers' when configured
        # (aiohttp, prometheus-client), so that each listener answers as soon
        # as it listens, and nothing configured out is loaded at all.
        server_type, registry_server_for, operations_server = _server_types(
            registry_config, http_config
        )
    except BaseException:
        await loop.run_in_executor(None, (await opening).close)
        raise
    engine = await opening
    try:
        server = server_type(engine, server_config)
        await server.start()
        with what_start_made_frozen(), collecting_less_often_while_serving():
            registry = None
            operations = None
            mirror: Any = None
            try:
                if registry_server_for is not None and registry_config is not None:
                    # One pool checks passwords for both sides (docs/design/0031):
                    # the server's current one, which a start after a stop renews.
                    registry = registry_server_for(
                        engine, registry_config, server_config, lambda: server.password_checks
                    )
                    await registry.start()
                if operations_server is not None and http_config is not None:
                    operations = operations_server(engine, http_config)
                    await operations.start()
                if mirror_table is not None:
                    # confluent-kafka is imported only when a mirror runs.
                    from engine.mirror.background import BackgroundMirror  # noqa: PLC0415

                    first = server_config.effective_listeners[0]
                    mirror = BackgroundMirror.from_table(mirror_table, first.host, server.port)
                    mirror.start()
                await stop.wait()
                log.info("shutting down")
            finally:
                if mirror is not None:
                    await loop.run_in_executor(None, mirror.stop)
                if operations is not None:
                    await operations.stop()
                if registry is not None:
                    await registry.stop()
                await server.stop()
    finally:
        await loop.run_in_executor(None, engine.close)
    return _report_close(engine, data_dir)


def _server_types(
    registry_config: RegistryConfig | None, http_config: HttpConfig | None
) -> tuple[type[Server], RegistryFactory | None, type[OperationsServer] | None]:
    """The wire server's class; the schema registry's factory and the
    operations server's class if configured, else None."""
    from engine.server.server import Server  # noqa: PLC0415  (see _serve)

    registry_server_for: RegistryFactory | None = None
    if registry_config is not None and registry_config.listen is not None:
        from engine.server.schema_registry import registry_server_for  # noqa: PLC0415
    operations_server: type[OperationsServer] | None = None
    if http_config is not None and http_config.listen is not None:
        from engine.server.operations_http import OperationsServer  # noqa: PLC0415

        operations_server = OperationsServer
    return Server, registry_server_for, operations_server


def _report_close(engine: Engine, data_dir: str) -> int:
    """Says what closing left behind; the exit status."""
    report = engine.close_report
    if report is None or report.uploaded:
        log.info("engine closed: every acknowledged append is uploaded to the object store")
        return 0
    log.error(
        "engine closed, NOT uploaded: %d appends (%d bytes) are only in the WAL in %s: %s. "
        "Keep that directory: the next start on it replays and uploads them, unless "
        "another server owns the object store now",
        report.wal_only_appends,
        report.wal_only_bytes,
        data_dir,
        report.reason,
    )
    return EXIT_NOT_UPLOADED
