"""docs/engine-format.md is enough to write a reader and a writer.

The catalog's records, the state logs' records, the partitions' checkpoints
and the time index are built here from the document's own tables and
shapes (read by tests.docspec): the engine must read what the document
describes, and what the engine writes must parse, and apply, by the
document's rules.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Hashable
from itertools import pairwise
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
import native
from engine import NewTopic
from engine.acl_bindings import AclBinding
from engine.catalog import PRODUCER_ID_BLOCK, RECORD_KINDS, SNAPSHOT_EVERY
from engine.checkpoint_records import CHANGES_VERSION, NEWEST_VERSION, PART_VERSION
from engine.credentials import new_credential, password_matches
from engine.delegation_tokens import DelegationTokenConfig
from engine.governance_log import KEPT_OF_DELETED, KEPT_PER_TOPIC
from engine.partition import CHECKPOINT_VERSION, FULL_CHECKPOINT_EVERY
from engine.schemas.types import RegisteredSchema
from engine.state_log import COMPACT_AFTER, COMPACT_CHUNK, StateLog
from engine.time_index import TimeIndex
from native import RecordSpec
from s3stream import StreamStore, StreamStoreConfig
from tests import docspec
from tests.engine.conftest import QUIET_STORE

DOC = "engine-format.md"
TEXT = docspec.text(DOC)


def _record_table(first: str) -> dict[str, list[str]]:
    """The record table (headed record, meaning) whose first record is ``first``."""
    for rows in docspec.tables(DOC):
        if rows and list(rows[0]) == ["record", "meaning"]:
            shapes = dict(docspec.array_shape(row["record"]) for row in rows)
            if next(iter(shapes)) == first:
                return shapes
    raise AssertionError(f"{DOC}: no record table starting with {first!r}")


CATALOG_RECORDS = _record_table("catalog")
STATE_RECORDS = _record_table("put")
CHECKPOINT = {row["key"].strip("`"): row["value"] for row in docspec.table(DOC, "key", "value")}
CHECKPOINT_CHANGES = {
    row["changes key"].strip("`"): row["value"]
    for row in docspec.table(DOC, "changes key", "value")
}
CHECKPOINT_PART = {
    row["part key"].strip("`"): row["value"] for row in docspec.table(DOC, "part key", "value")
}


def _stated(pattern: str) -> int:
    found = re.search(pattern, TEXT, flags=re.S)
    assert found is not None, pattern
    return int(found.group(1))


def _names(shape: str) -> list[str]:
    """The names of the first array in ``shape`` (nested arrays and maps as
    written, e.g. ``[[data, state], ...]``), as the document spells them."""
    inner = shape.strip()
    inner = inner[inner.index("[") + 1 : inner.rindex("]")]
    return docspec.split_top(inner)


def _first_array(cell: str) -> str:
    """The first ``[...]`` of a table cell or sentence, brackets balanced."""
    start = cell.index("[")
    depth = 0
    for i, char in enumerate(cell[start:], start):
        depth += {"[": 1, "]": -1}.get(char, 0)
        if depth == 0:
            return cell[start : i + 1]
    raise AssertionError(cell)


TOPIC = _names(re.search(r"A topic is `(\[.*?\])`:", TEXT).group(1))  # type: ignore[union-attr]
ACL = _names(re.search(r"An acl is `(\[.*?\])`,", TEXT).group(1))  # type: ignore[union-attr]
SNAPSHOT_KEYS = re.findall(r'"(\w+)":', CATALOG_RECORDS["snapshot"][0])
TOKEN = _names(
    re.search(r"A delegation token \(.*?\) is\s+`(\[.*?\])`:", TEXT, re.S).group(1)  # type: ignore[union-attr]
)
TOKEN_SECRET = "the spec's token secret"


def doc_token(token_id: str, owner: str, renewers: list[str], expiry_ms: int) -> list[Any]:
    """A delegation token as the document shapes it, made under TOKEN_SECRET:
    its secret check and its credentials derived as the document says."""
    found = re.search(
        r"PBKDF2-HMAC-SHA256 of.*?over the salt\s+`([^`]+)` at (\d+) iterations", TEXT, re.S
    )
    assert found is not None
    label, iterations = found.group(1), int(found.group(2))
    check = hashlib.pbkdf2_hmac("sha256", TOKEN_SECRET.encode(), label.encode(), iterations)[:16]
    digest = hmac.digest(TOKEN_SECRET.encode(), token_id.encode(), "sha512")
    password = base64.b64encode(digest).decode()
    credentials = {
        m: new_credential(m, password, 4096).to_wire() for m in ("SCRAM-SHA-256", "SCRAM-SHA-512")
    }
    by_name = {
        "token_id": token_id, "owner": owner, "requester": owner, "[renewer, ...]": renewers,
        "issue_ms": 1_000, "expiry_ms": expiry_ms, "max_ms": expiry_ms,
        "secret_check": check, "{mechanism: credential}": credentials,
    }  # fmt: skip
    return [by_name[name] for name in TOKEN]


def _row(cell: str) -> list[str]:
    """The names of one row of a list of rows, ``[[a, b], ...]``."""
    return _names(_first_array(_first_array(cell)[1:]))


CHANGE = [row["field"].strip("`") for row in docspec.table(DOC, "field", "type", "meaning")]
"""A governance change's fields, in the order of its array."""


def doc_change(**fields: Any) -> list[Any]:
    """A governance change as the document's table orders its fields."""
    assert sorted(fields) == sorted(CHANGE)
    return [fields[name] for name in CHANGE]


PRODUCER = _row(CHECKPOINT["producers"])
PRODUCER_BATCH = _row(PRODUCER[3])
TI_KEYS = re.findall(r'"(\w+)":', CHECKPOINT["ti"])
ONGOING = _row(CHECKPOINT["txns"].split('"ongoing":')[1])
ABORTED = _row(CHECKPOINT["txns"].split('"aborted":')[1])
EPOCH = _row(CHECKPOINT["epochs"])


def test_the_document_names_what_the_tests_build_from() -> None:
    assert TOPIC[0] == "name" and TOPIC[1].startswith("topic_id")
    assert SNAPSHOT_KEYS == [
        "topics",
        "producer_ids_end",
        "internal",
        "broker_configs",
        "acls",
        "credentials",
        "delegation_tokens",
        "client_quotas",
        "masking_keys",
        "schemas",
        "subject_versions",
        "schema_configs",
        "governance",
    ]
    assert TOKEN == [
        "token_id", "owner", "requester", "[renewer, ...]", "issue_ms", "expiry_ms", "max_ms",
        "secret_check", "{mechanism: credential}",
    ]  # fmt: skip
    assert CHANGE == [
        "at_ms", "action", "topic", "topic_id", "principal", "listener", "before", "after",
        "offsets",
    ]  # fmt: skip
    assert ACL == [
        "resource_type", "resource_name", "pattern_type", "principal", "host", "operation",
        "permission",
    ]  # fmt: skip
    assert PRODUCER[:3] == ["producer_id", "epoch", "last_append_ms"]
    assert PRODUCER[-2:] == ["coordinator_epoch", "last_ts"]
    assert PRODUCER_BATCH == ["first_seq", "last_seq", "first_offset", "last_offset", "max_ts"]
    assert TI_KEYS == ["max_ts", "since"]
    assert (ONGOING, ABORTED) == (
        ["producer_id", "first_offset"],
        ["producer_id", "first_offset", "last_offset"],
    )
    assert EPOCH == ["leader_epoch", "first offset written in it"]


def test_the_numbers_in_the_text_are_the_engines() -> None:
    assert _stated(r"at least (\d+)\s+records and at least as many bytes") == SNAPSHOT_EVERY
    assert _stated(r"reserved (\d+) at a time") == PRODUCER_ID_BLOCK
    assert _stated(r"number at least\s+(\d+) and twice the live keys") == COMPACT_AFTER
    assert _stated(r"records of at most (\d+) keys") == COMPACT_CHUNK
    assert _stated(r"at\s+least\s+every\s+(\d+)rd\s+is\s+`full`") == FULL_CHECKPOINT_EVERY + 1
    assert _stated(r"`index.interval.bytes` \((\d+)\)") == TimeIndex().interval_bytes
    assert int(CHECKPOINT["v"].split()[0]) == CHECKPOINT_VERSION
    assert _stated(r'`\["catalog", version, created_ms\]`[^|]*\|[^|]*`version` is (\d+)') == 1
    assert _stated(r"only its newest (\d+) entries are kept") == KEPT_PER_TOPIC
    assert _stated(r"only the newest (\d+) entries in all") == KEPT_OF_DELETED


# -- the catalog --------------------------------------------------------------------


def doc_record(record: str, table: dict[str, list[str]], **arguments: Any) -> bytes:
    """A record as its table shapes it: its name, then its arguments in the
    table's order (named as the table names them); an optional one (``?``)
    only when given."""
    fields = [a.removesuffix("?") for a in table[record]]
    optional = {a.removesuffix("?") for a in table[record] if a.endswith("?")}
    fields = [a for a in fields if a not in optional or _key_of(a) in arguments]
    assert sorted(arguments) == sorted(_key_of(a) for a in fields), record
    packed: bytes = msgpack.packb(
        [record, *(arguments[_key_of(a)] for a in fields)], use_bin_type=True
    )
    return packed


def _key_of(argument: str) -> str:
    """A keyword for an argument as the table writes it: ``[topic, ...]``
    is ``topics``, ``{config: value or nil}`` is ``configs``, a map with
    quoted keys is ``body``."""
    if argument.startswith('{"'):
        return "body"
    if argument.startswith("{"):
        return "configs"
    if argument.startswith("[["):
        return "pairs"
    if argument.startswith("["):
        return re.match(r"\[(\w+)", argument).group(1) + "s"  # type: ignore[union-attr]
    return argument


def doc_topic(
    name: str, topic_id: bytes, configs: dict[str, str], streams: list[list[int]], created_ms: int
) -> list[Any]:
    size = int(re.search(r"\((\d+) bytes\)", TOPIC[1]).group(1))  # type: ignore[union-attr]
    assert len(topic_id) == size
    by_shape = {
        "name": name,
        "topic_id": topic_id,
        "{config: value}": configs,
        "[[data, state], ...]": streams,
        "created_ms": created_ms,
    }
    return [by_shape[field.split(" (")[0]] for field in TOPIC]


def _append_all(store: StreamStore, stream_id: int, payloads: list[bytes]) -> None:
    for payload in payloads:
        offset = store.next_offset(stream_id)
        store.append(stream_id, offset, offset, payload)


TOPIC_IDS = [bytes([i]) * 16 for i in range(1, 7)]
AVRO_TEXT = '{"type":"record","name":"Pay","fields":[{"name":"cents","type":"long"}]}'
JSON_TEXT = '{"type":"object"}'
ALICE = new_credential("SCRAM-SHA-256", "pencil", salt=b"salt" * 8)
"""A credential, as the document shapes it."""
# ACL bindings as the document codes them: topic (2), literal (3), read (3)
# or write (4), deny (2) or allow (3).
READ_ONE = [2, "one", 3, "User:alice", "*", 3, 3]
DENY_HOST = [2, "one", 3, "User:*", "10.0.0.9", 3, 2]
WRITE_TWO = [2, "two", 3, "User:bob", "*", 4, 3]


def test_the_engine_reads_a_catalog_built_from_the_document(tmp_path: Path) -> None:
    node = tmp_path / "node"
    with StreamStore.open(node) as store:
        catalog = store.create_stream()
        store.open_stream(catalog, 0)
        s = store.create_streams(15)
        records = [
            doc_record("catalog", CATALOG_RECORDS, version=1, created_ms=5),
            doc_record("create_topic", CATALOG_RECORDS, topic=doc_topic(
                "one", TOPIC_IDS[0], {"cleanup.policy": "compact"}, [[s[0], s[1]]], 10
            )),
            doc_record("create_topics", CATALOG_RECORDS, topics=[
                doc_topic("two", TOPIC_IDS[1], {}, [[s[2], s[3]]], 11),
                doc_topic("three", TOPIC_IDS[2], {}, [[s[4], s[5]]], 12),
                doc_topic("four", TOPIC_IDS[3], {}, [[s[6], s[7]]], 13),
                doc_topic("five", TOPIC_IDS[4], {}, [[s[8], s[9]]], 14),
            ]),
            doc_record("add_partitions", CATALOG_RECORDS, name="one", pairs=[[s[10], s[11]]]),
            doc_record("add_partitions_many", CATALOG_RECORDS, pairs=[["two", [[s[12], s[13]]]]]),
            doc_record("alter_configs", CATALOG_RECORDS, name="one",
                       configs={"retention.ms": "1000", "cleanup.policy": None}),
            doc_record("alter_configs", CATALOG_RECORDS, name="two",
                       configs={"tidelog.provenance": "stamp"}, changes=[doc_change(
                           at_ms=20, action="alter", topic="two", topic_id=TOPIC_IDS[1],
                           principal="User:gov", listener="SASL_SSL",
                           before={"tidelog.provenance": "none"},
                           after={"tidelog.provenance": "stamp"}, offsets=[4],
                       )]),
            doc_record("configs_many", CATALOG_RECORDS, records=[
                ["alter_configs", "one", {"retention.ms": "2000"}],
                ["broker_configs", "1", {"num.partitions": "4"}],
            ]),
            doc_record("masking_key", CATALOG_RECORDS, name="three", key=b"3" * 32),
            doc_record("delete_topic", CATALOG_RECORDS, name="three"),
            doc_record("delete_topics", CATALOG_RECORDS, names=["four", "five"]),
            doc_record("producer_ids", CATALOG_RECORDS, end=2000),
            doc_record("internal_stream", CATALOG_RECORDS, name="example", stream_id=s[14]),
            doc_record("broker_configs", CATALOG_RECORDS, resource="",
                       configs={"log.retention.ms": "5000", "num.partitions": "3"}),
            doc_record("broker_configs", CATALOG_RECORDS, resource="",
                       configs={"num.partitions": None}),
            doc_record("user_credentials", CATALOG_RECORDS, user="alice",
                       mechanism="SCRAM-SHA-256", credential=ALICE.to_wire()),
            doc_record("user_credentials", CATALOG_RECORDS, user="alice",
                       mechanism="PLAIN", credential=ALICE.to_wire()),
            doc_record("user_credentials", CATALOG_RECORDS, user="alice",
                       mechanism="PLAIN", credential=None),
            doc_record("user_credentials_many", CATALOG_RECORDS, pairs=[
                ["bob", "SCRAM-SHA-512", ALICE.to_wire()],
                ["carol", "SCRAM-SHA-256", ALICE.to_wire()],
                ["carol", "SCRAM-SHA-256", None],
            ]),
            doc_record("client_quotas", CATALOG_RECORDS, entity=[["client-id", None]],
                       configs={"producer_byte_rate": 1024.0, "request_percentage": 50.0}),
            doc_record("client_quotas", CATALOG_RECORDS, entity=[["client-id", None]],
                       configs={"request_percentage": None}),
            doc_record("client_quotas", CATALOG_RECORDS,
                       entity=[["client-id", "app"], ["user", "alice"]],
                       configs={"consumer_byte_rate": 2048.0}),
            doc_record("client_quotas_many", CATALOG_RECORDS, pairs=[
                [[["user", "bob"]], {"producer_byte_rate": 512.0}],
                [[["user", "carol"]], {"request_percentage": 25.0}],
                [[["user", "carol"]], {"request_percentage": None}],
            ]),
            doc_record("masking_key", CATALOG_RECORDS, name="one", key=b"k" * 32),
            doc_record("schema", CATALOG_RECORDS, schema_id=1, schema_type="AVRO",
                       schema=AVRO_TEXT, references=[]),
            doc_record("schema", CATALOG_RECORDS, schema_id=2, schema_type="JSON",
                       schema=JSON_TEXT, references=[["Pay", "pay-value", 1]]),
            doc_record("subject_version", CATALOG_RECORDS, subject="pay-value", version=1,
                       schema_id=1, deleted=False),
            doc_record("subject_version", CATALOG_RECORDS, subject="other", version=1,
                       schema_id=2, deleted=False),
            doc_record("subject_version", CATALOG_RECORDS, subject="other", version=2,
                       schema_id=1, deleted=True),
            doc_record("subject_version", CATALOG_RECORDS, subject="other", version=1,
                       schema_id=None, deleted=True),
            doc_record("schema_config", CATALOG_RECORDS, subject=None,
                       configs={"compatibility": "FULL", "mode": "READONLY"}),
            doc_record("schema_config", CATALOG_RECORDS, subject=None, configs={"mode": None}),
            doc_record("schema_config", CATALOG_RECORDS, subject="pay-value",
                       configs={"compatibility": "NONE"}),
            doc_record("acls_add", CATALOG_RECORDS, acls=[READ_ONE, DENY_HOST, WRITE_TWO]),
            doc_record("acls_remove", CATALOG_RECORDS, acls=[DENY_HOST]),
            doc_record("delegation_token", CATALOG_RECORDS, tokens=[
                doc_token("kept-token", "User:alice", ["User:bob"], 2**62),
                doc_token("gone-token", "User:bob", [], 2**62),
            ]),
            doc_record("delegation_tokens_remove", CATALOG_RECORDS, token_ids=["gone-token"]),
        ]  # fmt: skip
        _append_all(store, catalog, records)
    built = {msgpack.unpackb(record)[0] for record in records}
    # The next tests start with a snapshot, one record or in parts
    assert built == set(CATALOG_RECORDS) - {"snapshot", "snapshot_part"}
    with engine.open(node) as e:
        assert sorted(e.list_topics()) == ["one", "two"]
        assert (e.partition_count("one"), e.partition_count("two")) == (2, 2)
        assert e.topic_id("one") == TOPIC_IDS[0]
        # cleanup.policy's override was removed, retention.ms's set, then
        # set again with a broker config in one configs_many
        assert e.topic_config("one").overrides == {"retention.ms": "2000"}
        assert e.broker_configs.dynamic("1") == {"num.partitions": "4"}
        (change,) = e.governance_history("two")
        assert (change.principal, change.listener, change.at_ms) == ("User:gov", "SASL_SSL", 20)
        assert e.stamped_ranges("two", 0) == [(4, None)]
        assert e.stamped_ranges("two", 1) == [(0, None)]  # a partition added after the change
        assert e.init_producer_id()[0] >= 2000  # never one of a reserved block
        assert e.catalog.state.internal["example"] == s[14]
        assert e.credentials.mechanisms("alice") == {"SCRAM-SHA-256": ALICE}
        assert e.credentials.users() == ["alice", "bob"]  # carol's was set, then removed
        assert e.client_quotas.entities() == {
            (("client-id", None),): {"producer_byte_rate": 1024.0},
            (("client-id", "app"), ("user", "alice")): {"consumer_byte_rate": 2048.0},
            (("user", "bob"),): {"producer_byte_rate": 512.0},
        }
        assert e.catalog.state.masking_keys == {"one": b"k" * 32}
        assert e.schemas.subjects() == ["pay-value"]
        assert e.schemas.subjects(deleted=True) == ["other", "pay-value"]
        assert e.schemas.versions("other", deleted=True) == [2]
        assert e.schemas.latest("pay-value") == RegisteredSchema(1, "AVRO", AVRO_TEXT)
        assert e.schemas.by_id(2) is None  # no version names it any more
        assert (e.schemas.compatibility(), e.schemas.compatibility("pay-value")) == ("FULL", "NONE")
        assert e.schemas.mode() == "READWRITE"
        assert [acl.to_wire() for acl in e.catalog.state.acls] == [READ_ONE, WRITE_TWO]
    settings = engine.EngineConfig(delegation_tokens=DelegationTokenConfig(TOKEN_SECRET))
    with engine.open(node, config=settings) as e:
        [token] = e.delegation_tokens.tokens()
        assert (token.token_id, token.owner, token.renewers) == (
            "kept-token", "User:alice", ("User:bob",)
        )  # fmt: skip
        login = e.delegation_tokens.login("kept-token", "SCRAM-SHA-512")
        assert login is not None and login.owner == "User:alice"
        digest = hmac.digest(TOKEN_SECRET.encode(), b"kept-token", "sha512")
        assert password_matches(login.credential, "SCRAM-SHA-512", base64.b64encode(digest))


def test_the_engine_reads_a_catalog_that_starts_with_a_snapshot(tmp_path: Path) -> None:
    node = tmp_path / "node"
    with StreamStore.open(node) as store:
        catalog = store.create_stream()
        store.open_stream(catalog, 0)
        data, state, internal = store.create_streams(3)
        body = {
            "topics": [
                doc_topic(
                    "kept", TOPIC_IDS[5], {"retention.ms": "5000", "tidelog.provenance": "stamp"},
                    [[data, state]], 1,
                )
            ],
            "producer_ids_end": 7000,
            "internal": {"example": internal},
            "broker_configs": {"": {"num.partitions": "3"}},
            "acls": [[4, "kafka-cluster", 3, "User:ops", "10.0.0.1", 7, 3]],
            "credentials": {"bob": {"SCRAM-SHA-512": ALICE.to_wire()}},
            "delegation_tokens": [doc_token("snapshot-token", "User:bob", [], 2**62)],
            "client_quotas": [[[["user", None]], {"consumer_byte_rate": 4096.0}]],
            "masking_keys": {"kept": b"m" * 32},
            "schemas": [[7, "AVRO", AVRO_TEXT, []]],
            "subject_versions": [["pay-value", 3, 7, False], ["pay-value", 4, 7, True]],
            "schema_configs": [
                [None, {"compatibility": "NONE"}], ["pay-value", {"mode": "IMPORT"}]
            ],
            "governance": [doc_change(
                at_ms=1, action="create", topic="kept", topic_id=TOPIC_IDS[5],
                principal="User:ops", listener="embedded", before={},
                after={"tidelog.provenance": "stamp"}, offsets=[0],
            )],
        }  # fmt: skip
        assert list(body) == SNAPSHOT_KEYS
        _append_all(store, catalog, [doc_record("snapshot", CATALOG_RECORDS, body=body)])
    with engine.open(node) as e:
        assert e.list_topics() == ["kept"]
        assert e.topic_config("kept").overrides == {
            "retention.ms": "5000",
            "tidelog.provenance": "stamp",
        }
        assert e.init_producer_id()[0] >= 7000
        assert e.catalog.state.internal["example"] == internal
        assert e.broker_configs.num_partitions == 3
        assert list(e.catalog.state.acls) == [
            AclBinding(4, "kafka-cluster", 3, "User:ops", "10.0.0.1", 7, 3)
        ]
        assert e.credentials.get("bob", "SCRAM-SHA-512") == ALICE
        assert [t.token_id for t in e.delegation_tokens.stored()] == ["snapshot-token"]
        assert e.client_quotas.entities() == {(("user", None),): {"consumer_byte_rate": 4096.0}}
        assert e.catalog.state.masking_keys == {"kept": b"m" * 32}
        assert e.stamped_ranges("kept", 0) == [(0, None)]
        assert e.schemas.version("pay-value", "latest").version == 3
        assert e.schemas.versions("pay-value", deleted=True) == [3, 4]
        assert e.schemas.by_id(7) == RegisteredSchema(7, "AVRO", AVRO_TEXT)
        assert (e.schemas.compatibility(), e.schemas.mode("pay-value")) == ("NONE", "IMPORT")
        # A new schema's id is one past the greatest bound.
        e.schemas.set_mode("READWRITE", "pay-value")
        assert e.schemas.register("other", '"string"') == 8


def _doc_parts(body: dict[str, Any], piece: int) -> list[bytes]:
    """A snapshot in parts as the document makes one: the opening
    ``catalog`` record of version 2, then the packed map cut into pieces."""
    packed = msgpack.packb(body, use_bin_type=True)
    pieces = [packed[i : i + piece] for i in range(0, len(packed), piece)]
    return [
        doc_record("catalog", CATALOG_RECORDS, version=2, created_ms=5),
        *(
            doc_record("snapshot_part", CATALOG_RECORDS, index=i, count=len(pieces), part=p)
            for i, p in enumerate(pieces)
        ),
    ]


def test_the_engine_reads_a_catalog_that_starts_with_a_snapshot_in_parts(
    tmp_path: Path,
) -> None:
    """Snapshots in parts, as the document has them: one begun and ended
    by another record before its last part is skipped and the record
    applied; one whose parts all follow its opening record in order is
    the state; one left unfinished at the stream's end is skipped."""
    assert re.search(r"A `catalog` record of `version` 2 opens a snapshot in parts", TEXT)
    node = tmp_path / "node"
    with StreamStore.open(node) as store:
        catalog = store.create_stream()
        store.open_stream(catalog, 0)
        (data_one, state_one, data_two, state_two) = store.create_streams(4)
        body = {
            "topics": [doc_topic("kept", TOPIC_IDS[5], {"retention.ms": "5000"},
                                 [[data_one, state_one]], 1)],
            "producer_ids_end": 7000,
            "internal": {},
            "acls": [[4, "kafka-cluster", 3, "User:" + "o" * 300, "*", 7, 3]],
        }  # fmt: skip
        whole = _doc_parts(body, 64)
        assert len(whole) > 4
        unfinished = _doc_parts({**body, "producer_ids_end": 1}, 40)
        records = [
            *whole[:3],
            doc_record("producer_ids", CATALOG_RECORDS, end=9000),
            *whole[3:],  # out of turn: no opening record before them
            *whole,
            doc_record("create_topic", CATALOG_RECORDS, topic=doc_topic(
                "added", TOPIC_IDS[4], {}, [[data_two, state_two]], 2)),
            *unfinished[:-1],
        ]  # fmt: skip
        _append_all(store, catalog, records)
    with engine.open(node) as e:
        assert e.list_topics() == ["added", "kept"]
        assert e.topic_config("kept").overrides == {"retention.ms": "5000"}
        # the producer_ids record's, before the whole snapshot: a reader
        # takes the greatest end it reads, a snapshot's included
        assert e.catalog.state.producer_ids_end == 9000
        assert [a.principal for a in e.catalog.state.acls] == ["User:" + "o" * 300]


def test_a_catalog_that_starts_with_a_snapshot_in_parts_not_whole_is_refused(
    tmp_path: Path,
) -> None:
    """Trimmed only once every part is durable, a stream that starts with
    an opening record and holds no whole snapshot lost parts."""
    node = tmp_path / "node"
    body = {
        "topics": [],
        "producer_ids_end": 7000,
        "internal": {},
        "masking_keys": {"a": b"k" * 500},
    }
    with StreamStore.open(node) as store:
        catalog = store.create_stream()
        store.open_stream(catalog, 0)
        parts = _doc_parts(body, 100)
        _append_all(store, catalog, [parts[0], *parts[2:]])
    with pytest.raises(ValueError, match="starts with a snapshot in parts that is not whole"):
        engine.open(node)


def test_a_governance_changes_reserved_trailing_fields_are_read_past(tmp_path: Path) -> None:
    """The document reserves the fields after a change's last for later
    versions: a catalog whose changes carry some (in a record and in a
    snapshot) opens, and the changes read as the table's fields say."""
    assert re.search(r"Fields after\s+`offsets` are reserved", TEXT)
    future = ["a later field", {"and": "another"}]
    node = tmp_path / "node"
    with StreamStore.open(node) as store:
        catalog = store.create_stream()
        store.open_stream(catalog, 0)
        data, state = store.create_streams(2)
        created = doc_change(
            at_ms=1, action="create", topic="kept", topic_id=TOPIC_IDS[5],
            principal="User:ops", listener="embedded", before={},
            after={"tidelog.provenance": "stamp"}, offsets=[0],
        )  # fmt: skip
        altered = doc_change(
            at_ms=2, action="alter", topic="kept", topic_id=TOPIC_IDS[5],
            principal="User:gov", listener="SASL_SSL", before={"tidelog.provenance": "stamp"},
            after={"tidelog.provenance": "none"}, offsets=[3],
        )  # fmt: skip
        body = {
            "topics": [doc_topic("kept", TOPIC_IDS[5], {"tidelog.provenance": "stamp"},
                                 [[data, state]], 1)],
            "producer_ids_end": 0,
            "internal": {},
            "governance": [created + future],
        }  # fmt: skip
        records = [
            doc_record("snapshot", CATALOG_RECORDS, body=body),
            doc_record("alter_configs", CATALOG_RECORDS, name="kept",
                       configs={"tidelog.provenance": "none"}, changes=[altered + future]),
        ]  # fmt: skip
        _append_all(store, catalog, records)
    with engine.open(node) as e:
        history = e.governance_history("kept")
        assert [list(change.to_wire()) for change in history] == [created, altered]
        assert e.stamped_ranges("kept", 0) == [(0, 3)]


def test_a_stamping_topic_the_history_does_not_record_is_recorded_at_its_end(
    tmp_path: Path,
) -> None:
    """A topic created stamping by a tidelog before the governance history
    (its record has no changes) holds records with stamp-named headers no
    range says are the broker's. Opened, it gets an entry whose range
    begins at each partition's end: nothing before can be proven stamped,
    what comes after is (docs/design/0047)."""
    node = tmp_path / "node"
    forged = ("tidelog.principal", b"User:forged")
    with StreamStore.open(node) as store:
        catalog = store.create_stream()
        store.open_stream(catalog, 0)
        data, state = store.create_streams(2)
        records = [
            doc_record("catalog", CATALOG_RECORDS, version=1, created_ms=5),
            doc_record("create_topic", CATALOG_RECORDS, topic=doc_topic(
                "old", TOPIC_IDS[0], {"tidelog.provenance": "stamp"}, [[data, state]], 10
            )),
        ]  # fmt: skip
        _append_all(store, catalog, records)
        store.open_stream(data, 0)
        written = native.encode_batch(
            [RecordSpec(1000, None, b"a", headers=(forged,)), RecordSpec(1001, None, b"b")]
        )
        store.append(data, 0, 1, written)
    with engine.open(node) as e:
        assert e.stamped_ranges("old", 0) == [(2, None)]
        (change,) = e.governance_history("old")
        assert (change.action, change.listener, change.offsets) == ("alter", "unrecorded", [2])
        assert change.after["tidelog.provenance"] == "stamp"
        e.produce("old", 0, native.encode_batch([RecordSpec(1002, None, b"c")]))
    with engine.open(node) as e:  # recorded once
        assert len(e.governance_history("old")) == 1
        assert e.stamped_ranges("old", 0) == [(2, None)]


def test_a_store_whose_lowest_stream_is_no_catalog_is_refused(tmp_path: Path) -> None:
    node = tmp_path / "node"
    with StreamStore.open(node) as store:
        stream = store.create_stream()
        store.open_stream(stream, 0)
        _append_all(store, stream, [doc_record("producer_ids", CATALOG_RECORDS, end=1000)])
    with pytest.raises(ValueError, match="not a tidelog catalog"):
        engine.open(node)


def test_a_catalog_record_the_document_does_not_name_is_refused(tmp_path: Path) -> None:
    node = tmp_path / "node"
    with StreamStore.open(node) as store:
        stream = store.create_stream()
        store.open_stream(stream, 0)
        future: bytes = msgpack.packb(["rename_topic", "a", "b"])
        assert "rename_topic" not in CATALOG_RECORDS
        _append_all(
            store, stream, [doc_record("catalog", CATALOG_RECORDS, version=1, created_ms=0), future]
        )
    with pytest.raises(ValueError, match="unknown catalog record 'rename_topic'"):
        engine.open(node)


def test_the_record_kinds_a_write_may_hold_are_the_documents() -> None:
    """A writer's records are checked before they are written (design
    0062): the kinds the check lets through are the document's."""
    assert set(RECORD_KINDS) == set(CATALOG_RECORDS)


def read_stream(store: StreamStore, stream_id: int) -> list[Any]:
    """Every append of a stream, one msgpack value each, read with fetch."""
    values, offset = [], store.start_offset(stream_id)
    while offset < store.end_offset(stream_id):
        fetched = store.fetch(stream_id, offset)
        values += [msgpack.unpackb(b.payload, raw=False) for b in fetched.batches]
        offset = fetched.next_offset
    return values


class DocCatalog:
    """The catalog's state, by the document's table alone."""

    def __init__(self) -> None:
        self.topics: dict[str, dict[str, Any]] = {}
        self.producer_ids_end = 0
        self.internal: dict[str, int] = {}
        self.broker_configs: dict[str, dict[str, str]] = {}
        self.acls: list[dict[str, Any]] = []
        self.credentials: dict[str, dict[str, list[Any]]] = {}
        self.delegation_tokens: dict[str, dict[str, Any]] = {}
        self.client_quotas: dict[tuple[tuple[str, str | None], ...], dict[str, float]] = {}
        self.masking_keys: dict[str, bytes] = {}
        self.schemas: dict[int, list[Any]] = {}
        self.subject_versions: dict[tuple[str, int], list[Any]] = {}
        self.schema_configs: dict[str | None, dict[str, str]] = {}
        self.governance: list[dict[str, Any]] = []

    def apply(self, record: list[Any]) -> None:
        name, args = record[0], record[1:]
        fields = [a.removesuffix("?") for a in CATALOG_RECORDS[name]]
        required = [a for a in CATALOG_RECORDS[name] if not a.endswith("?")]
        assert len(required) <= len(args) <= len(fields), record
        named = {_key_of(a): v for a, v in zip(fields, args, strict=False)}
        for change in named.get("changes", []):
            assert len(change) == len(CHANGE) and isinstance(change[3], bytes), change
            self.governance.append(dict(zip(CHANGE, change, strict=True)))
        if name == "create_topic":
            self._add(named["topic"])
        elif name == "create_topics":
            assert len(named["topics"]) >= 2  # "written for two or more"
            for topic in named["topics"]:
                self._add(topic)
        elif name == "delete_topic":
            del self.topics[named["name"]]
            self.masking_keys.pop(named["name"], None)
        elif name == "delete_topics":
            for topic in named["names"]:
                del self.topics[topic]
                self.masking_keys.pop(topic, None)
        elif name == "masking_key":
            assert isinstance(named["key"], bytes) and len(named["key"]) == 32
            self.masking_keys[named["name"]] = named["key"]
        elif name == "add_partitions":
            self.topics[named["name"]]["streams"] += named["pairs"]
        elif name == "add_partitions_many":
            for topic, pairs in named["pairs"]:
                self.topics[topic]["streams"] += pairs
        elif name == "alter_configs":
            for key, value in named["configs"].items():
                self.topics[named["name"]]["configs"].pop(key, None)
                if value is not None:
                    self.topics[named["name"]]["configs"][key] = value
        elif name == "configs_many":
            for inner in named["records"]:
                assert inner[0] in ("alter_configs", "broker_configs")
                self.apply(inner)
        elif name == "producer_ids":
            self.producer_ids_end = named["end"]
        elif name == "internal_stream":
            self.internal[named["name"]] = named["stream_id"]
        elif name == "broker_configs":
            configs = self.broker_configs.setdefault(named["resource"], {})
            for key, value in named["configs"].items():
                configs.pop(key, None)
                if value is not None:
                    configs[key] = value
        elif name == "acls_add":
            for raw in named["acls"]:
                self.acls.append(dict(zip(ACL, raw, strict=True)))
        elif name == "acls_remove":
            for raw in named["acls"]:
                self.acls.remove(dict(zip(ACL, raw, strict=True)))
        elif name == "user_credentials":
            self._alter_credential(named["user"], named["mechanism"], named["credential"])
        elif name == "user_credentials_many":
            for user, mechanism, credential in named["pairs"]:
                self._alter_credential(user, mechanism, credential)
        elif name == "delegation_token":
            for raw in named["tokens"]:
                self._set_token(raw)
        elif name == "delegation_tokens_remove":
            for token_id in named["token_ids"]:
                del self.delegation_tokens[token_id]
        elif name == "client_quotas":
            self._alter_client_quotas(named["entity"], named["configs"])
        elif name == "client_quotas_many":
            for raw_entity, configs in named["pairs"]:
                self._alter_client_quotas(raw_entity, configs)
        elif name == "schema":
            assert named["schema_id"] not in self.schemas, "an id is bound once"
            assert named["schema_id"] == max(self.schemas, default=0) + 1
            assert named["schema_type"] in ("AVRO", "JSON")
            assert all(len(r) == 3 for r in named["references"])
            self.schemas[named["schema_id"]] = [
                named["schema_type"], named["schema"], named["references"]
            ]  # fmt: skip
        elif name == "subject_version":
            key = (named["subject"], named["version"])
            if named["schema_id"] is None:
                del self.subject_versions[key]
            else:
                assert named["schema_id"] in self.schemas
                self.subject_versions[key] = [named["schema_id"], named["deleted"]]
        elif name == "schema_config":
            settings = self.schema_configs.setdefault(named["subject"], {})
            for key, value in named["configs"].items():
                assert key in ("compatibility", "mode")
                settings.pop(key, None)
                if value is not None:
                    settings[key] = value
            if not settings:
                del self.schema_configs[named["subject"]]
        elif name == "snapshot":
            self.schemas = {row[0]: list(row[1:]) for row in named["body"].get("schemas", [])}
            self.subject_versions = {
                (row[0], row[1]): list(row[2:]) for row in named["body"].get("subject_versions", [])
            }
            self.schema_configs = {
                subject: dict(settings)
                for subject, settings in named["body"].get("schema_configs", [])
            }
            self.client_quotas = {
                tuple(tuple(pair) for pair in entity): dict(quotas)
                for entity, quotas in named["body"].get("client_quotas", [])
            }
            self.acls = [dict(zip(ACL, raw, strict=True)) for raw in named["body"].get("acls", [])]
            self.masking_keys = dict(named["body"].get("masking_keys", {}))
            self.governance = [
                dict(zip(CHANGE, change, strict=True))
                for change in named["body"].get("governance", [])
            ]
            self.topics = {}
            for topic in named["body"]["topics"]:
                self._add(topic)
            self.producer_ids_end = named["body"]["producer_ids_end"]
            self.internal = dict(named["body"]["internal"])
            self.broker_configs = {
                resource: dict(configs)
                for resource, configs in named["body"].get("broker_configs", {}).items()
            }
            self.credentials = {
                user: dict(mechanisms)
                for user, mechanisms in named["body"].get("credentials", {}).items()
            }
            self.delegation_tokens = {}
            for raw in named["body"].get("delegation_tokens", []):
                self._set_token(raw)

    def _set_token(self, raw: list[Any]) -> None:
        token = dict(zip(TOKEN, raw, strict=True))
        assert all(":" in p for p in (token["owner"], token["requester"], *token["[renewer, ...]"]))
        assert token["issue_ms"] <= token["expiry_ms"] <= token["max_ms"]
        assert isinstance(token["secret_check"], bytes) and len(token["secret_check"]) == 16
        credentials = token["{mechanism: credential}"]
        assert set(credentials) == {"SCRAM-SHA-256", "SCRAM-SHA-512"}
        assert all(credential[3] == 4096 for credential in credentials.values())
        self.delegation_tokens[token["token_id"]] = token

    def _alter_credential(self, user: str, mechanism: str, credential: Any) -> None:
        mechanisms = self.credentials.setdefault(user, {})
        mechanisms.pop(mechanism, None)
        if credential is not None:
            salt, stored_key, server_key, iterations = credential
            assert isinstance(salt, bytes) and isinstance(iterations, int)
            assert len(stored_key) == len(server_key)
            mechanisms[mechanism] = credential
        if not mechanisms:
            del self.credentials[user]

    def _alter_client_quotas(self, raw_entity: list[Any], configs: dict[str, Any]) -> None:
        pairs = [tuple(pair) for pair in raw_entity]
        assert pairs == sorted(pairs) and len({t for t, _ in pairs}) == len(pairs)
        assert all(t in ("user", "client-id") for t, _ in pairs)
        entity = tuple(pairs)
        quotas = self.client_quotas.setdefault(entity, {})  # type: ignore[arg-type]
        for key, value in configs.items():
            quotas.pop(key, None)
            if value is not None:
                assert isinstance(value, float) and value > 0
                quotas[key] = value
        if not quotas:
            del self.client_quotas[entity]  # type: ignore[arg-type]

    def _add(self, raw: list[Any]) -> None:
        fields = dict(zip((f.split(" (")[0] for f in TOPIC), raw, strict=True))
        assert isinstance(fields["topic_id"], bytes) and len(fields["topic_id"]) == 16
        self.topics[fields["name"]] = {
            "configs": dict(fields["{config: value}"]),
            "streams": [list(p) for p in fields["[[data, state], ...]"]],
        }


def test_what_the_engine_writes_parses_and_applies_by_the_document(tmp_path: Path) -> None:
    node = tmp_path / "node"
    config = engine.EngineConfig(
        store=QUIET_STORE, delegation_tokens=DelegationTokenConfig(TOKEN_SECRET)
    )
    with engine.open(node, config=config) as e:
        e.create_topic("solo", 1, {"retention.ms": "60000"})
        e.create_topics([NewTopic("a", 1), NewTopic("b", 1), NewTopic("gone", 1)])
        e.create_topic("also-gone", 1)
        e.create_topics([NewTopic("x", 1), NewTopic("y", 1)])
        e.create_partitions("solo", 2)
        e.create_partitions_many([("a", 2), ("b", 3)])
        e.alter_configs("solo", {"retention.ms": None, "segment.bytes": "1048576"})
        masked = '[{"path":"/email","action":"hash"}]'
        e.alter_configs("a", {"tidelog.masking.rules": masked})
        e.alter_configs("gone", {"tidelog.masking.rules": masked})
        e.delete_topic("gone")
        e.delete_topics(["x", "y"])
        e.broker_configs.alter(
            "", {"log.retention.ms": "90000"}, incremental=True, validate_only=False
        )
        e.alter_configs_many(
            [("b", {"retention.ms": "5000"}, True)], [("1", {"num.partitions": "2"}, True)]
        )
        kept = AclBinding(2, "solo", 3, "User:alice", "*", 3, 3)
        e.catalog.add_acls([kept, AclBinding(3, "app-", 4, "User:*", "*", 2, 2)])
        e.catalog.remove_acls([AclBinding(3, "app-", 4, "User:*", "*", 2, 2)])
        e.credentials.add("alice", "SCRAM-SHA-512", "pencil")
        e.credentials.add("bob", "PLAIN", "pencil")
        e.credentials.remove_user("bob")
        e.credentials.alter_many([("dave", "SCRAM-SHA-256", ALICE), ("erin", "PLAIN", ALICE)])
        app = (("client-id", "app"), ("user", None))
        e.client_quotas.alter(app, {"producer_byte_rate": 1000.0, "consumer_byte_rate": 2000.0})
        e.client_quotas.alter(app, {"consumer_byte_rate": None})
        carol = (("user", "carol"),)
        e.client_quotas.alter_many([(carol, {"request_percentage": 5.0}), (app, {})])
        alice = e.credentials.get("alice", "SCRAM-SHA-512")
        token, token_hmac = e.delegation_tokens.create("User:alice", "User:alice", ["User:bob"])
        token_expiry = e.delegation_tokens.renew("User:bob", token_hmac, 60_000)
        _, gone_hmac = e.delegation_tokens.create("User:bob", "User:alice", [])
        e.delegation_tokens.expire("User:bob", gone_hmac, -1)
        pay_id = e.schemas.register("pay-value", AVRO_TEXT)
        assert e.schemas.register("again-value", AVRO_TEXT) == pay_id
        e.schemas.register("gone-value", '"string"')
        e.schemas.delete_subject("gone-value")
        e.schemas.delete_subject("gone-value", permanent=True)
        e.schemas.set_compatibility("FULL")
        e.schemas.set_compatibility("NONE", "pay-value")
        e.schemas.set_mode("READONLY", "again-value")
        e.init_producer_id()
        stamps = _produce_timed(e, "a", 0)
        with e.producer(transactional_id="spec") as producer:
            producer.init_transactions(30)
            producer.begin_transaction()
            producer.send("b", b"committed", partition=2).result(30)
            producer.commit_transaction(30)
            producer.begin_transaction()
            producer.send("b", b"aborted", partition=2).result(30)
            producer.abort_transaction(30)
        # The leader epoch is the store's writer epoch (docs: Leader epochs).
        leader_epoch = e.store.manifest.epoch
        masking_keys = dict(e.catalog.state.masking_keys)
        expected = {
            name: (e.partition_count(name), e.topic_config(name).overrides)
            for name in e.list_topics()
        }
    with StreamStore.open(node) as store:
        catalog_stream = min(store.streams())
        records = read_stream(store, catalog_stream)
        assert records[0][0] in ("catalog", "snapshot")
        model = DocCatalog()
        for record in records:
            model.apply(record)
        assert {r[0] for r in records} >= set(CATALOG_RECORDS) - {"snapshot", "snapshot_part"}
        assert {
            name: (len(t["streams"]), t["configs"]) for name, t in model.topics.items()
        } == expected
        assert model.broker_configs == {
            "": {"log.retention.ms": "90000"},
            "1": {"num.partitions": "2"},
        }
        assert model.acls == [
            {
                "resource_type": 2, "resource_name": "solo", "pattern_type": 3,
                "principal": "User:alice", "host": "*", "operation": 3, "permission": 3,
            }
        ]  # fmt: skip
        assert alice is not None
        assert model.credentials == {
            "alice": {"SCRAM-SHA-512": alice.to_wire()},
            "dave": {"SCRAM-SHA-256": ALICE.to_wire()},
            "erin": {"PLAIN": ALICE.to_wire()},
        }
        assert model.client_quotas == {
            app: {"producer_byte_rate": 1000.0},
            carol: {"request_percentage": 5.0},
        }
        assert model.masking_keys == masking_keys
        [kept_token] = model.delegation_tokens.values()
        assert (kept_token["token_id"], kept_token["owner"], kept_token["[renewer, ...]"]) == (
            token.token_id, "User:alice", ["User:bob"]
        )  # fmt: skip
        assert kept_token["expiry_ms"] == token_expiry
        written = msgpack.packb(records, use_bin_type=True)
        assert token_hmac not in written and gone_hmac not in written  # never an HMAC
        assert set(masking_keys) == {"a"}
        assert [(c["action"], c["topic"]) for c in model.governance] == [
            ("alter", "a"),
            ("alter", "gone"),
            ("delete", "gone"),
        ]
        assert model.governance[0]["after"]["tidelog.masking.rules"] == masked
        assert model.schemas[pay_id] == ["AVRO", AVRO_TEXT, []]
        assert model.subject_versions == {
            ("pay-value", 1): [pay_id, False], ("again-value", 1): [pay_id, False]
        }  # fmt: skip
        assert model.schema_configs == {
            None: {"compatibility": "FULL"},
            "pay-value": {"compatibility": "NONE"},
            "again-value": {"mode": "READONLY"},
        }
        logs = {name: _apply_state_log(read_stream(store, i)) for name, i in model.internal.items()}
        assert logs["transactions"], "the transactional id lives in a state log"
        streams = {name: t["streams"] for name, t in model.topics.items()}
        checkpoints = {
            (name, p): read_stream(store, state)
            for name, pairs in streams.items()
            for p, (_, state) in enumerate(pairs)
        }
    written = [c for cs in checkpoints.values() for c in cs]
    assert written, "the engine writes checkpoints on close"
    for checkpoint in written:
        _check_checkpoint(checkpoint)
    _check_time_index(checkpoints[("a", 0)], stamps)
    assert checkpoints[("a", 0)][-1]["epochs"] == [[leader_epoch, 0]]
    aborted = [c["txns"]["aborted"] for c in checkpoints[("b", 2)]]
    assert aborted[-1] and all(len(a) == len(ABORTED) for a in aborted[-1])
    producers = [p for c in checkpoints[("b", 2)] for p in c.get("changed", c.get("producers"))]
    assert any(p[PRODUCER.index("coordinator_epoch")] >= 0 for p in producers)


def _apply_state_log(records: list[Any]) -> dict[Hashable, Any]:
    state: dict[Hashable, Any] = {}
    for record in records:
        name, args = record[0], record[1:]
        assert len(args) == len(STATE_RECORDS[name]), record
        if name == "put":
            for key, value in args[0]:
                state[_tuple(key)] = value
        elif name == "del":
            for key in args[0]:
                state.pop(_tuple(key), None)
    return state


def _tuple(key: Any) -> Hashable:
    return tuple(_tuple(k) for k in key) if isinstance(key, list) else key


def _check_checkpoint(checkpoint: dict[str, Any]) -> None:
    if checkpoint["v"] == CHANGES_VERSION:
        assert set(checkpoint) == set(CHECKPOINT) - {"producers"} | set(CHECKPOINT_CHANGES)
        assert not checkpoint["full"]
        assert not set(checkpoint["gone"]) & {p[0] for p in checkpoint["changed"]}
        entries = checkpoint["changed"]
    else:
        assert set(checkpoint) == set(CHECKPOINT)
        assert checkpoint["v"] == CHECKPOINT_VERSION
        entries = checkpoint["producers"]
    assert isinstance(checkpoint["full"], bool)
    assert len(checkpoint["index"]) % 2 == 0
    assert list(checkpoint["ti"]) == TI_KEYS
    for producer in entries:
        assert len(producer) == len(PRODUCER)
        batches = producer[3]  # the array of batches, between last_append_ms and coordinator_epoch
        assert len(batches) <= 5 and all(len(b) == len(PRODUCER_BATCH) for b in batches)
    assert all(len(e) == len(EPOCH) for e in checkpoint["epochs"])
    assert sorted(checkpoint["txns"]) == ["aborted", "ongoing"]
    assert all(len(t) == len(ONGOING) for t in checkpoint["txns"]["ongoing"])


def _produce_timed(e: engine.Engine, topic: str, partition: int) -> list[tuple[int, int]]:
    """Batches of 1 KiB records whose timestamps go up and down; returns
    each record's (offset, timestamp)."""
    stamps: list[tuple[int, int]] = []
    base = 1_700_000_000_000
    for i in range(40):
        times = [base + ((i * 7919 + j * 104729) % 100_000) for j in range(3)]
        specs = [RecordSpec(t, None, bytes(1024)) for t in times]
        result = e.produce(topic, partition, native.encode_batch(specs))
        stamps += [(result.base_offset + j, t) for j, t in enumerate(times)]
    return stamps


def _check_time_index(checkpoints: list[dict[str, Any]], stamps: list[tuple[int, int]]) -> None:
    """The document's reading of the index: apply ``index`` entries in order
    (a full checkpoint replaces them); each (max_ts, offset) bounds every
    record below offset; both columns only grow."""
    entries: list[tuple[int, int]] = []
    for checkpoint in checkpoints:
        flat = checkpoint["index"]
        pairs = list(zip(flat[::2], flat[1::2], strict=True))
        entries = pairs if checkpoint["full"] else entries + pairs
    assert len(entries) >= 5, "40 KiB at 4 KiB per entry"
    for (ts0, off0), (ts1, off1) in pairwise(entries):
        assert ts1 > ts0 and off1 > off0
    for max_ts, offset in entries:
        assert max(t for o, t in stamps if o < offset) <= max_ts
    assert checkpoints[-1]["ti"]["max_ts"] == max(t for _, t in stamps)


# -- state logs ------------------------------------------------------------------------


SMALL_WAL = StreamStoreConfig(wal_segment_bytes=256 * 1024)
"""A store opened per example: small WAL segments are quick to preallocate."""
Key = int | str | tuple[int | str, ...]
keys = st.one_of(
    st.integers(-(2**40), 2**40),
    st.text(max_size=8),
    st.tuples(st.text(max_size=4), st.integers(0, 9)),
)


@settings(max_examples=15, deadline=None)
@given(st.lists(st.tuples(st.booleans(), keys, st.integers(-(2**63), 2**64 - 1)), max_size=30))
def test_a_state_log_reads_records_built_from_the_document(
    tmp_path_factory: pytest.TempPathFactory, changes: list[tuple[bool, Key, int]]
) -> None:
    node = tmp_path_factory.mktemp("node")
    expected: dict[Hashable, Any] = {}
    records = []
    for put, key, value in changes:
        wire = list(key) if isinstance(key, tuple) else key
        if put:
            records.append(doc_record("put", STATE_RECORDS, pairs=[[wire, value]]))
            expected[key] = value
        else:
            records.append(doc_record("del", STATE_RECORDS, keys=[wire]))
            expected.pop(key, None)
    records.insert(len(records) // 2, doc_record("compact", STATE_RECORDS))
    with StreamStore.open(node, config=SMALL_WAL) as store:
        stream = store.create_stream()
        store.open_stream(stream, 0)
        _append_all(store, stream, records)
        assert dict(StateLog.open(store, stream).items()) == expected


def test_what_a_state_log_writes_parses_and_applies_by_the_document(tmp_path: Path) -> None:
    with StreamStore.open(tmp_path / "node") as store:
        stream = store.create_stream()
        store.open_stream(stream, 0)
        log = StateLog.open(store, stream)
        for i in range(300):
            log.update(puts={("group", i % 40): {"offset": i}}, deletes=[("group", 0)]).result(30)
        log.compact()
        records = read_stream(store, stream)
        assert records[0] == ["compact"]  # the stream was trimmed to its compact record
        assert len(records) == 1 + -(-len(log) // COMPACT_CHUNK)
        for record in records:
            assert len(record) - 1 == len(STATE_RECORDS[record[0]])
        state: dict[Hashable, Any] = {}
        for record in records:
            if record[0] == "put":
                state.update((_tuple(k), v) for k, v in record[1])
        assert state == dict(log.items())


# -- partition checkpoints ----------------------------------------------------------------


def test_a_checkpoint_newer_than_the_documented_version_is_refused(tmp_path: Path) -> None:
    node = tmp_path / "node"
    with engine.open(node) as e:
        e.create_topic("t", 1)
        e.produce("t", 0, native.encode_batch([RecordSpec(1000, None, b"v")]))
        data, state = e.catalog.state.topics["t"].streams[0]
    with StreamStore.open(node) as store:
        store.open_stream(state, 0)
        newer = {"v": NEWEST_VERSION + 1, "end": store.end_offset(data)}
        _append_all(store, state, [msgpack.packb(newer)])
    with pytest.raises(ValueError, match="newer than this tidelog"), engine.open(node) as e:
        e.partition("t", 0)


@pytest.mark.parametrize("version", [1, 2, 3, CHECKPOINT_VERSION])
def test_the_engine_recovers_a_checkpoint_built_from_the_document(
    tmp_path: Path, version: int
) -> None:
    node = tmp_path / "node"
    with engine.open(node) as e:
        e.create_topic("t", 1)
        for i in range(3):
            e.produce("t", 0, native.encode_batch([RecordSpec(1000 + i, None, b"v")]))
        data, state = e.catalog.state.topics["t"].streams[0]
    producer = {
        "producer_id": 4242, "epoch": 3, "last_append_ms": 99, "coordinator_epoch": 7,
        "last_ts": 2002,
        "batches": [[{"first_seq": 10, "last_seq": 14, "first_offset": 0, "last_offset": 1,
                      "max_ts": 1001}[n] for n in PRODUCER_BATCH]],
    }  # fmt: skip
    producer_fields = [
        producer["batches"] if i == 3 else producer[n] for i, n in enumerate(PRODUCER)
    ]
    values: dict[str, Any] = {
        "v": version,
        "full": True,
        "index": [1000, 1, 1001, 2],
        "ti": dict(zip(TI_KEYS, [1002, 17], strict=True)),
        # Format 1 lacks coordinator_epoch and last_ts, format 2 last_ts.
        "producers": [producer_fields[: len(PRODUCER) - max(0, 3 - version)]],
        "epochs": [[0, 0], [5, 2]],
        "cleaned": 1,
        "horizon": [0, 1000, 1, 1001],
        "txns": {"ongoing": [], "aborted": [[4242, 0, 1]]},
    }
    with StreamStore.open(node) as store:
        store.open_stream(state, 0)
        values["end"] = store.end_offset(data)
        keys = [
            k
            for k in CHECKPOINT
            if (version > 1 or k != "txns") and (version > 3 or k != "horizon")
        ]
        _append_all(store, state, [msgpack.packb({k: values[k] for k in keys}, use_bin_type=True)])
    with engine.open(node) as e:
        partition = e.partition("t", 0)
        entry = partition.producers.producers[4242]
        assert (entry.epoch, entry.last_append_ms) == (3, 99)
        assert [tuple(b) for b in entry.batches] == [(10, 14, 0, 1, 1001)]
        assert entry.coordinator_epoch == (7 if version > 1 else -1)
        # Before format 3 the last timestamp is the last batch's.
        assert entry.last_timestamp == (2002 if version > 2 else 1001)
        assert partition.leader_epochs[:2] == [(0, 0), (5, 2)]
        assert partition.cleaned_offset == 1
        # Before format 4 a cleaned partition's horizon is all of its cleaned part.
        assert partition.compaction_horizon == (
            (0, 1000, 1, 1001) if version > 3 else (0, -(2**63), 1, 2**63 - 1)
        )
        assert [tuple(a) for a in partition.txns.aborted] == ([(4242, 0, 1)] if version > 1 else [])
        assert partition.time_index.start_for(1001) == 1


def test_the_engine_applies_producer_changes_built_from_the_document(tmp_path: Path) -> None:
    """A full checkpoint, then producer changes as their table has them:
    recovery replaces the changed producer's entry and drops the gone one."""
    assert int(CHECKPOINT_CHANGES["v"]) == CHANGES_VERSION
    node = tmp_path / "node"
    with engine.open(node) as e:
        e.create_topic("t", 1)
        e.produce("t", 0, native.encode_batch([RecordSpec(1000, None, b"v")]))
        data, state = e.catalog.state.topics["t"].streams[0]
    with StreamStore.open(node) as store:
        store.open_stream(state, 0)
        end = store.end_offset(data)
        full = _small_checkpoint(end, 7)
        full["producers"].append([8, 0, 99, [[0, 0, 0, 0, 1000]], -1, 1000])
        values = {
            **full,
            "full": False,
            "v": CHANGES_VERSION,
            "changed": [[7, 1, 123, [[0, 4, 0, 0, 1001]], -1, 1001]],
            "gone": [8],
        }
        keys = [k for k in CHECKPOINT if k != "producers"] + list(CHECKPOINT_CHANGES)
        changes = {k: values[k] for k in keys}
        _append_all(store, state, [msgpack.packb(c, use_bin_type=True) for c in (full, changes)])
    with engine.open(node) as e:
        producers = e.partition("t", 0).producers.producers
        assert list(producers) == [7]
        assert producers[7].epoch == 1 and producers[7].last_append_ms == 123
        assert [tuple(b) for b in producers[7].batches] == [(0, 4, 0, 0, 1001)]


def test_producer_changes_follow_an_older_tidelogs_checkpoints(tmp_path: Path) -> None:
    """A state stream an older tidelog wrote (a full checkpoint of format 4,
    then an incremental one holding the whole table, as they all did): it
    loads, the next checkpoint records the producers changed since, and a
    restart applies them on top."""
    node = tmp_path / "node"
    with engine.open(node) as e:
        e.create_topic("t", 1)
        e.produce("t", 0, native.encode_batch([RecordSpec(1000, None, b"v")]))
        data, state = e.catalog.state.topics["t"].streams[0]
    with StreamStore.open(node) as store:
        store.open_stream(state, 0)
        end = store.end_offset(data)
        # The incremental one's table no longer holds producer 7: forgotten.
        older = [_small_checkpoint(end, 7), {**_small_checkpoint(end, 8), "full": False}]
        _append_all(store, state, [msgpack.packb(c, use_bin_type=True) for c in older])
    e = engine.open(node)
    try:
        partition = e.partition("t", 0)
        assert list(partition.producers.producers) == [8]
        batch = native.encode_batch(
            [RecordSpec(1001, None, b"w")], producer_id=8, producer_epoch=0, base_sequence=1
        )
        first = e.produce("t", 0, batch).base_offset
        written = partition.checkpoint()
        assert written is not None and written.result(30) == partition.high_watermark
        assert read_stream(e.store, state)[-1]["v"] == CHANGES_VERSION
    finally:
        e.close(flush=False)
    with engine.open(node) as e:
        retried = e.produce("t", 0, batch)
        assert retried.duplicate and retried.base_offset == first
        assert list(e.partition("t", 0).producers.producers) == [8]


def _documented_parts(checkpoint: dict[str, Any], count: int) -> list[bytes]:
    """``checkpoint`` cut into ``count`` parts as the parts' table has them."""
    packed = msgpack.packb(checkpoint, use_bin_type=True)
    size = -(-len(packed) // count)
    shapes = {
        "v": lambda _: PART_VERSION,
        "end": lambda _: checkpoint["end"],
        "part": lambda place: place,
        "parts": lambda _: count,
        "chunk": lambda place: packed[place * size : (place + 1) * size],
    }
    return [
        msgpack.packb({k: shapes[k](place) for k in CHECKPOINT_PART}, use_bin_type=True)
        for place in range(count)
    ]


def _small_checkpoint(end: int, producer_id: int) -> dict[str, Any]:
    return {
        "v": CHECKPOINT_VERSION, "end": end, "full": True, "index": [],
        "ti": dict(zip(TI_KEYS, [1002, 0], strict=True)),
        "producers": [[producer_id, 0, 99, [[0, 0, 0, 0, 1000]], -1, 1000]],
        "epochs": [[0, 0]], "cleaned": 0, "horizon": None, "txns": {"ongoing": [], "aborted": []},
    }  # fmt: skip


@pytest.mark.parametrize("completed", [True, False])
def test_the_engine_recovers_a_checkpoint_in_parts_built_from_the_document(
    tmp_path: Path, completed: bool
) -> None:
    """Parts as the table has them: a run completed is the checkpoint in
    force; a run never completed (cut by a crash) is passed over, and so is
    one a later part 0 cut short."""
    assert int(CHECKPOINT_PART["v"]) == PART_VERSION > CHECKPOINT_VERSION
    node = tmp_path / "node"
    with engine.open(node) as e:
        e.create_topic("t", 1)
        for _ in range(3):
            e.produce("t", 0, native.encode_batch([RecordSpec(1000, None, b"v")]))
        data, state = e.catalog.state.topics["t"].streams[0]
    with StreamStore.open(node) as store:
        store.open_stream(state, 0)
        end = store.end_offset(data)
        before = msgpack.packb(_small_checkpoint(end, 1), use_bin_type=True)
        cut_short = _documented_parts(_small_checkpoint(end, 2), 4)[:2]
        run = _documented_parts(_small_checkpoint(end, 3), 3)
        _append_all(store, state, [before, *cut_short, *(run if completed else run[:-1])])
    with engine.open(node) as e:
        partition = e.partition("t", 0)
        assert set(partition.producers.producers) == {3 if completed else 1}
        # Every batch is below the checkpoint in force: none was replayed.
        assert partition.durable_checkpoint_end == partition.high_watermark == 3
