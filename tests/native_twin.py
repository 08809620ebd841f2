"""Which tests the pure-Python pass runs (``TIDELOG_PURE=1``, tests/run.sh).

The suite runs twice: once on native/'s C extension and once on its
pure-Python twin. The second pass is there to show that the twin gives the
results the C gives, so it runs only the tests whose outcome can depend on
which implementation is live: native/ itself, the formats and recovery of
the WAL and of s3stream (their CRCs and record batches go through native/),
the engine's produce, fetch, idempotence, transaction markers, compaction and
validation, and one end-to-end pass through a real client. The rest of the
suite (group coordination, admin, the CLI, framing, limits, ...) runs the
same Python whichever native/ is loaded, so one pass over it is enough.

A test belongs to the pure pass when its node id starts with an entry of
``PURE_PASS``, it is not handed the C extension itself as a parameter
(tests/native/'s ``impl`` of ``c``: that case runs the same in both
passes) and it is not marked ``c_extension`` (tests/native/conftest.py's
``needs_c``: a test of the C extension itself, against the twin or a
reference, that names both modules and never the live native/, so the pure
pass would only run again what the C pass ran). tests/conftest.py marks
those ``native_twin`` and the pure pass selects ``-m native_twin``.
tests/test_native_twin.py keeps the list honest: every entry exists, and a
test module that imports native/ is either in the pure pass or named in
``ONE_PASS_ONLY`` with the reason it need not be; a test marked
``c_extension`` names the C extension and not the live native/.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import ModuleType

PURE_PASS: tuple[str, ...] = (
    # native/ against its own spec and the C against the pure twin.
    "tests/native/",
    # Formats, CRCs and recovery of the WAL and of what object storage holds.
    "tests/wal/",
    "tests/s3stream/",
    # The engine's produce and fetch paths, which validate, stamp, rewrite and
    # decode record batches through native/.
    "tests/engine/test_api.py",
    # A block's CRC32C failing once on the way and passing when read again.
    "tests/faults/test_damage_on_the_way.py",
    "tests/engine/test_bombs.py",
    "tests/engine/test_fresh_machine.py",
    "tests/engine/test_idempotence.py",
    "tests/engine/test_max_timestamp.py",
    "tests/engine/test_model.py",
    # Lookup by header decodes stored batches (compressed too) to index and check them.
    "tests/memory/test_lookup.py",
    # Forks read their parent's batches, embedded and from the object store.
    "tests/memory/test_forks.py",
    "tests/memory/test_fork_model.py",
    "tests/engine/test_provenance.py",
    # Stamped ranges: which records the broker stamped, C and pure alike.
    "tests/engine/test_stamped_ranges.py",
    "tests/engine/test_record_validation.py",
    # Which batch attributes validation refuses, keeps or rewrites, C and pure alike.
    "tests/engine/test_batch_attributes.py",
    # send_many encodes its batches with native/'s encode_records.
    "tests/engine/test_send_many.py",
    "tests/engine/test_protobuf_checks.py",
    "tests/engine/test_schema_checks.py",
    "tests/engine/test_schema_validation.py",
    "tests/engine/test_spec.py",
    "tests/engine/test_state_log.py",
    "tests/engine/test_transactions.py",
    "tests/engine/test_transactions_v2.py",
    "tests/engine/test_txn_model.py",
    # A fetch cuts an append of several batches at their boundaries with native/'s scan.
    "tests/engine/test_whole_batches.py",
    "tests/engine/test_units.py",
    "tests/engine/test_verify.py",
    "tests/engine/test_wal_damage.py",
    # State as of a time decodes records and the cleaner rewrites them through native/.
    "tests/memory/test_state_at.py",
    # End to end: librdkafka over a real socket to `python -m engine serve`
    # (which inherits TIDELOG_PURE), every codec both ways.
    "tests/server/test_kcat.py::test_produce_and_consume_with_each_codec",
    # A table topic's rows are its records as native/ decodes them.
    "tests/tables/test_table_topic.py::test_the_table_holds_the_committed_records_exactly",
    # The table's columns are built over native/'s decode_columns.
    "tests/tables/test_columns.py",
    # The timestamp type a batch is stored with, rewritten by native/ in
    # the server's own process.
    "tests/server/test_produce_timestamp_type.py",
    # A CreateTime batch stored with its records' largest timestamp, over the wire.
    "tests/server/test_produce_max_timestamp.py",
    # Masked fetches decode and re-encode batches through native/.
    "tests/server/test_masked_fetch_paths.py",
    # The records a refused batch names are found by native/'s record walk.
    "tests/server/test_record_errors.py",
    # Schema validation decodes the refused batches' records through native/.
    "tests/server/test_schema_validation.py",
    # The WAL's checksum of produce data is combined from the batches' CRCs by native/.
    "tests/server/test_produce_checksums.py",
    # A Produce partition's records are framed, and their tail dropped, by native/.
    "tests/server/test_produce_framing.py",
    # zstd below v7, the baseOffset and the record walk are native/'s checks.
    "tests/server/test_produce_checks.py",
    # The one-partition path's refusals (corrupt, cut short, two batches) are native/'s.
    "tests/server/test_produce_one.py",
    # The provenance stamp is written into the batches by native/.
    "tests/server/test_provenance_shared.py",
)

ONE_PASS_ONLY: dict[str, str] = {
    "tests/server/test_produce_refusal_garbage.py": "builds its batch with native/; what it "
    "tests is what the Produce handler's refusal of a partition leaves for the collector",
    "tests/server/test_produce_deadlines.py": "builds its batches with native/; what it tests "
    "is when a request waiting past its timeout is answered, seconds of waits a pass",
    "tests/server/test_state_record_bounds.py": "builds idempotent batches with native/; what "
    "it tests is how records of the server's state past one WAL record are answered",
    "tests/engine/test_checkpoint_parts.py": "builds idempotent batches with native/; what "
    "it tests is how a partition's checkpoint past one WAL record is written and read",
    "tests/engine/test_checkpoint_cadence.py": "builds idempotent batches with native/; what "
    "it tests is when a partition is checkpointed and what a crash between checkpoints keeps",
    "tests/engine/test_producer_changes.py": "builds idempotent batches with native/; what "
    "it tests is which producers a partition's checkpoints record and a restart loads",
    "tests/server/test_checkpoint_parts.py": "builds idempotent batches with native/; what "
    "it tests is how a checkpoint in parts is answered over the wire and loaded",
    "tests/server/test_produce_wal_failure.py": "decodes what was kept with native/; what it "
    "tests is how a failed WAL sync is answered to a client",
    "tests/engine/test_submit_async.py": "builds its batches with native/; what it tests is "
    "how an append's answer reaches a caller on an event loop",
    "tests/engine/test_producer_max_block.py": "decodes what was written with native/; what "
    "it tests is how long a send waits for queue space",
    "tests/server/test_fenced_epoch_librdkafka.py": "builds its batches with native/; what it "
    "tests is how librdkafka follows a fenced fetch's named leader",
    "tests/server/test_kafka40_versions.py": "builds a transactional batch with native/; what "
    "it tests is the codes each version answers",
    "tests/server/test_transactions_v2_wire.py": "builds its transactional batches with "
    "native/; what it tests is the coordinator's answers and the markers' epochs, covered "
    "in both passes by tests/engine/test_transactions_v2.py",
    "tests/server/test_fetch_past_the_high_watermark.py": "builds its batches with native/; "
    "what it tests is the answer to a fetch between the high watermark and the log end",
    "tests/server/test_fetch_look_races.py": "reads the answer's batch headers with native/; "
    "what it tests is the answer to a Fetch raced between its look and its read",
    "tests/server/test_fetch_repeated_partitions.py": "builds its batches with native/; what "
    "it tests is how a Fetch naming a partition twice is read and answered",
    "tests/server/test_offset_for_leader_epoch.py": "builds its batches with native/; what it "
    "tests is the epochs' end offsets OffsetForLeaderEpoch answers",
    "tests/server/test_pipelined_answers.py": "builds its batches with native/; what it tests "
    "is how the connection orders and writes answers",
    "tests/server/test_sliced_writes.py": "decodes the answer's records with native/ only to "
    "name their values; what it tests is how a response is cut into writes",
    "tests/server/test_shared_reads.py": "decodes the answers' records with native/ only to "
    "name their values; what it tests is which fetches share a read, whose bytes pass as stored",
    "tests/test_startup_imports.py": "checks which modules starting tidelog loads; native/ "
    "loads the same libraries on either implementation",
    "tests/bench/test_engine_bench.py": "checks the bench reports the implementation it ran on",
    "tests/faults/test_read_faults.py": "builds its batches with native/; what it tests is "
    "how an object store's read errors are answered, not how batches are read",
    "tests/faults/test_stalled_reads.py": "decodes the answers' records with native/ only to "
    "name their values; what it tests is how long a Fetch waits for a stalled object store",
    "tests/faults/test_list_offsets_off_loop.py": "builds its batches with native/; what it "
    "tests is where the server runs a slow lookup",
    "tests/engine/test_compaction_lags.py": "builds its batches with native/; what it tests "
    "is when the cleaner runs, and the rewrite itself is in the pure pass's test_model.py",
    "tests/memory/test_fork_cli.py": "builds its batches with native/; what it tests is the "
    "command around Engine.fork (tests/memory/test_forks.py), not how batches are read",
    "tests/memory/test_outside_reads.py": "builds its batches with native/; what it tests is "
    "how lookup and state find the objects they read, not how batches are read",
    "tests/memory/test_state_cli.py": "builds its batches with native/; the records are "
    "decoded as in tests/memory/test_state_at.py, which the pure pass runs",
    "tests/engine/test_inspect_cli.py": "builds its batches with native/; what it tests is "
    "what the CLI reads from the WAL and the bucket, not how batches were checked",
    "tests/engine/test_kafka_code.py": "imports native/'s error classes, not its code",
    "tests/server/test_transaction_acls.py": "builds one batch with native/; what it tests is "
    "which principal may write into a transaction",
    "tests/engine/test_masked_fetch.py": "masks every batch on the C extension and on the pure "
    "twin itself, and checks they agree",
    "tests/server/test_acls.py": "builds one batch with native/; what it tests is who may "
    "do what, decided before any batch is read",
    "tests/server/test_bad_input.py": "builds its batches with native/; the server's answers "
    "to them are the engine's, which the pure pass covers",
    "tests/server/test_bombs.py": "the bombs of tests/engine/test_bombs.py, which the pure "
    "pass runs, sent over a socket",
    "tests/server/test_hanging_transactions.py": "builds its batches with native/; the "
    "markers and the last stable offset are covered by tests/engine/test_transactions.py",
    "tests/server/test_list_offsets.py": "builds its batches with native/; the time index "
    "lookups are covered by tests/engine/test_max_timestamp.py",
    "tests/server/test_log_dirs.py": "builds its batches with native/; a partition's stored "
    "bytes do not depend on which native/ wrote them",
    "tests/server/test_produce_gathered.py": "builds its batches with native/; what it tests "
    "is how the WAL groups one request's appends",
    "tests/server/test_client_quotas.py": "builds its batches with native/; what it tests is "
    "how the server meters and throttles their bytes",
    "tests/server/test_fuzz.py": "builds its batches with native/; what it tests is the "
    "server's framing and decoding of requests",
    "tests/server/test_transactions_confluent.py": "builds its batches with native/; the "
    "markers' encoding is covered by tests/engine/test_transactions.py",
    "tests/tables/test_partitions.py": "builds one batch with native/; what it tests is "
    "which partition each row's file is in, and the rows themselves are decoded as in "
    "tests/tables/test_table_topic.py, which the pure pass runs",
    "tests/server/test_answer_bounds.py": "builds its batches with native/; what it tests "
    "is how much the server holds for answers, not how batches are read",
    "tests/server/test_catalog_snapshot_off_loop.py": "builds one batch with native/; what it "
    "tests is where the catalog's snapshot is written and what the event loop serves meanwhile",
    "tests/server/test_plain_flood.py": "builds one batch with native/; what it tests is "
    "where PLAIN passwords are checked and what a connection reads meanwhile",
    "tests/server/test_schema_regex_bombs.py": "builds its batches with native/; the schema "
    "checks of their records are covered by tests/engine/test_schema_checks.py, which the "
    "pure pass runs",
    "tests/server/test_fetch_whole_batches.py": "builds its batches with native/; the cut "
    "at batch boundaries is covered by tests/engine/test_whole_batches.py, which the pure "
    "pass runs",
    "tests/test_native_twin.py": "checks this selection; it names native/'s modules, "
    "it does not run them",
    "tests/engine/test_append_clock_reads.py": "builds its batches with native/; what it tests "
    "is how often an append reads the clock, the same Python on either",
    "tests/engine/test_submit_then_to.py": "builds its batch with native/; what it "
    "tests is which leader an append reaches and when it is answered, the same Python on either",
    "tests/server/test_produce_one_create_check.py": "builds its batch with native/; what it "
    "tests is when the Produce handler makes and asks its create check, the same Python on either",
    "tests/engine/test_acks_over_a_deletion.py": "builds its batches with native/; what it "
    "tests tells an acknowledgement failed over a topic's deletion from a storage failure",
    "tests/server/test_produce_over_a_deletion.py": "builds its batch with native/; what it "
    "tests is the one-partition Produce's answer to an acknowledgement failed over a deletion",
}


def in_pure_pass(nodeid: str) -> bool:
    """Whether the test with this node id (relative to the repository root,
    as pytest names it) runs in the pure-Python pass."""
    return any(_covers(entry, nodeid) for entry in PURE_PASS)


def _covers(entry: str, nodeid: str) -> bool:
    if entry.endswith("/"):  # a directory
        return nodeid.startswith(entry)
    if "::" in entry:  # one test, with any parameters
        return nodeid == entry or nodeid.startswith(entry + "[")
    return nodeid.startswith(entry + "::")  # a module


def given_the_c_extension(params: Mapping[str, object]) -> bool:
    """Whether a test's parameters hand it native/'s C extension module
    itself: it then tests the C whichever implementation is live."""
    return any(
        isinstance(value, ModuleType) and value.__name__ == "native._cnative"
        for value in params.values()
    )


def tests_the_c_extension(marks: Iterable[str]) -> bool:
    """Whether a test with these marks tests native/'s C extension itself
    (``c_extension``, set by tests/native/conftest.py's ``needs_c``): it
    runs the same whichever implementation is live."""
    return "c_extension" in marks
