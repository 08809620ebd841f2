"""DescribeLogDirs: the broker's one log directory, the engine's data
directory, with the size of each partition in it.

Versions: v1-v4 (v0 is gone from Kafka 4). v1 answers after quota
throttling (this broker never throttles); v2 is flexible; v3 adds the
top-level error code; v4 the volume's total and usable bytes
(``shutil.disk_usage`` of the data directory). v5 (cordoned log
directories) is not served.

A partition's size is what it holds as stored, from its log start offset:
its ranges in committed objects (each counted whole, as Kafka counts a
log's whole segments) and its batches not uploaded yet (in the WAL and the
log cache); see StreamStore.stored_bytes. The offset lag is 0 (a leader's
log is its own high watermark's reference) and no log is a future one.
As Kafka's ReplicaManager.describeLogDirs: partitions that do not exist
are left out, and so are topics left with none.
"""

from __future__ import annotations

import logging
import os
import shutil
from typing import TYPE_CHECKING, Any

from engine.errors import EngineError
from engine.protocol.apis import ApiKey
from engine.protocol.kafka_code import KafkaCode
from engine.server import authorize
from engine.server.authorizer import AclOperation
from engine.server.context import Body, RequestContext
from engine.server.handlers.registry import handles_off_loop
from engine.types import TopicPartition
from s3stream import S3StreamError

if TYPE_CHECKING:
    # The kio request classes, for the handlers' annotations only: importing
    # every version's class costs the server's start hundreds of modules.
    from engine.server.handlers.requests import DescribeLogDirsRequest

log = logging.getLogger("tidelog.server")


@handles_off_loop(
    ApiKey.DESCRIBE_LOG_DIRS,
    1,
    4,
    notes={
        1: "the data directory, with each partition's stored bytes",
        2: "flexible encoding",
        3: "top-level error code",
        4: "the volume's total and usable bytes (v5, cordoned log dirs, is not served)",
    },
)
def handle_describe_log_dirs(context: RequestContext, request: DescribeLogDirsRequest) -> Body:
    """Off the event loop: sizing every partition reads each one's ranges."""
    engine = context.engine
    if not authorize.allowed_on_cluster(context, AclOperation.DESCRIBE):
        code = KafkaCode.CLUSTER_AUTHORIZATION_FAILED
        return {"throttle_time": 0, "error_code": code, "results": []}
    if request.topics is None:  # null: every partition
        names = engine.list_topics()
        wanted = None
    else:
        names = list(dict.fromkeys(topic.topic for topic in request.topics))
        wanted = {
            TopicPartition(topic.topic, index)
            for topic in request.topics
            for index in topic.partitions
        }
    log_dir = os.path.abspath(engine.store.data_dir)
    try:
        volume = shutil.disk_usage(log_dir)
    except OSError as error:
        log.warning("DescribeLogDirs: the data directory %s: %s", log_dir, error)
        result: dict[str, Any] = {
            "error_code": KafkaCode.KAFKA_STORAGE_ERROR,
            "log_dir": log_dir,
            "topics": [],
        }
    else:
        result = {
            "error_code": KafkaCode.NONE,
            "log_dir": log_dir,
            "topics": _topics(context, names, wanted),
            "total_bytes": volume.total,
            "usable_bytes": volume.free,
        }
    return {"throttle_time": 0, "error_code": KafkaCode.NONE, "results": [result]}


def _topics(
    context: RequestContext, names: list[str], wanted: set[TopicPartition] | None
) -> list[dict[str, Any]]:
    engine = context.engine
    by_topic: dict[str, list[dict[str, Any]]] = {}
    for tp in engine.topic_partitions(names):
        if wanted is not None and tp not in wanted:
            continue
        try:
            size = engine.partition(tp.topic, tp.partition).stored_bytes
        except (EngineError, S3StreamError):
            continue  # deleted meanwhile: no log to describe
        by_topic.setdefault(tp.topic, []).append(
            {
                "partition_index": tp.partition,
                "partition_size": size,
                "offset_lag": 0,
                "is_future_key": False,
            }
        )
    return [{"name": name, "partitions": partitions} for name, partitions in by_topic.items()]
