"""``tidelog mirror``: copy topics, offset syncs and consumer-group
checkpoints from one Kafka-compatible cluster to another
(docs/migration.md, docs/design/0008-mirror.md). Exit 0 when ``--once`` is
done or on SIGTERM/SIGINT, 1 when the mirror cannot go on (the target
diverged or refused a record), 2 when it cannot run (bad arguments,
confluent-kafka missing)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import Any

from engine.cli.help_format import HelpFormatter
from engine.cli.mirror_tools import (
    MASKED_COPIES_FLAG,
    add_translate_parser,
    add_verify_arguments,
    run_verify,
)
from engine.errors import EngineError

FAILED = 1
CANNOT_RUN = 2


def add_command(commands: Any) -> None:
    parser = commands.add_parser(
        "mirror",
        help="mirror topics and consumer groups to a Kafka-compatible cluster",
        description=(
            "Copy every matching topic from --from to --to, partition for partition, with"
            " keys, values, headers and timestamps; write offset syncs on the target"
            " (tidelog.mirror.offset-syncs) and commit the source groups' translated offsets"
            " there. Resumable: progress is kept on the target, and nothing the target has"
            " is sent again. Needs confluent-kafka: pip install 'tidelog[mirror]'."
        ),
        epilog="examples:\n  tidelog mirror --from 127.0.0.1:9092 --to kafka-1:9092 "
        "--to-config security.protocol=SASL_SSL --topics 'orders|payments' --once\n"
        "  tidelog mirror --verify --from 127.0.0.1:9092 --to kafka-1:9092\n"
        "  tidelog mirror translate orders:0:41:3 --to kafka-1:9092",
        formatter_class=HelpFormatter,
    )
    add_flags(parser)
    parser.add_argument(
        "--verify",
        action="store_true",
        help="compare the two clusters instead of copying: per partition, counts and content "
        "hashes, the first difference named on both sides; exit 1 if they differ",
    )
    add_verify_arguments(parser)
    parser.set_defaults(run=run)
    add_translate_parser(parser.add_subparsers(dest="mirror_action", metavar="ACTION"))


def add_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="source", metavar="BOOTSTRAP", help="source cluster")
    parser.add_argument("--to", dest="target", metavar="BOOTSTRAP", help="target cluster")
    parser.add_argument(
        "--topics", default=".*", metavar="REGEX", help="topics to mirror (default: all)"
    )
    parser.add_argument(
        "--groups", default=".*", metavar="REGEX", help="groups to checkpoint (default: all)"
    )
    parser.add_argument(
        "--from-config",
        action="append",
        default=[],
        metavar="K=V",
        help="a librdkafka property of the source's clients; repeatable",
    )
    parser.add_argument(
        "--to-config",
        action="append",
        default=[],
        metavar="K=V",
        help="a librdkafka property of the target's clients; repeatable",
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="copy up to the source's end as it is now, checkpoint the groups, exit 0",
    )
    parser.add_argument(
        "--checkpoint-interval",
        type=float,
        default=None,
        metavar="SECONDS",
        help="how often to checkpoint consumer groups (default 10)",
    )
    parser.add_argument("--masked-copies", **MASKED_COPIES_FLAG)
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")


def run(args: argparse.Namespace) -> int:
    if args.verify:
        return run_verify(args)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from engine.mirror.kafka import KafkaMissing  # noqa: PLC0415 - loads no client
    from engine.mirror.runner import MirrorRunner  # noqa: PLC0415
    from engine.mirror.settings import MirrorSettings, parse_properties  # noqa: PLC0415

    if not args.source or not args.target:
        print("tidelog mirror: --from and --to are both needed", file=sys.stderr)
        return CANNOT_RUN
    try:
        extra = {}
        if args.checkpoint_interval is not None:
            extra["checkpoint_interval_s"] = args.checkpoint_interval
        settings = MirrorSettings(
            source=args.source,
            target=args.target,
            topics=args.topics,
            groups=args.groups,
            source_config=parse_properties(args.from_config, "--from-config"),
            target_config=parse_properties(args.to_config, "--to-config"),
            masked_copies=args.masked_copies,
            **extra,
        )
    except ValueError as error:  # MirrorSettingsError, or ConfigOutOfRange
        print(f"tidelog mirror: {error}", file=sys.stderr)
        return CANNOT_RUN
    runner = MirrorRunner(settings, once=args.once)
    # Put back when the run ends: a caller of main() in its own process
    # (a test, an embedding script) keeps its own handlers after it.
    previous = {
        signum: signal.signal(signum, lambda *_: runner.stop.set())
        for signum in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        report = runner.run()
    except KafkaMissing as error:
        print(f"tidelog mirror: {error}", file=sys.stderr)
        return CANNOT_RUN
    except EngineError as error:
        print(f"tidelog mirror: {type(error).__name__}: {error}", file=sys.stderr)
        return FAILED
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    print(
        f"mirrored {report.copied} records ({report.matched} found on the target already),"
        f" {report.syncs} offset syncs, {len(report.checkpoints)} groups checkpointed",
        file=sys.stderr,
    )
    return 0
