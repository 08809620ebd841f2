"""Produce rate to topics that hold their values to schemas, beside a topic
that checks nothing, in one run.

    python bench/validation_bench.py [--batches 2000] [--rounds 3] [--quick] [--json]

Each phase appends the same pre-encoded record batches (100 records of an
order, about 130 bytes each, uncompressed) to its own one-partition topic
with ``Engine.submit``, 64 batches in flight, each counted once durable in
the WAL (group commit shares the fsyncs), on one engine:

- none: ``tidelog.value.schema.validation=none`` (the path that never
  decodes records), the baseline;
- id: Confluent-framed values whose schema id is registered;
- full_json: framed JSON that a JSON Schema (required fields, types, a
  minimum) checks;
- full_avro: framed Avro binary of the same order, decoded by fastavro.

The phases alternate, a round each, so the machine's drift falls on all of
them; each figure is the median of its rounds, each ratio one of medians.
MB/s counts the record values' bytes (Avro's are smaller than JSON's), so
the ratios compare records/s: the same records, the phase's rate over
none's. ``--json`` prints one JSON object; its headline keys are the
phases' mb_s and records_s and the ratios id_vs_none, full_json_vs_none and
full_avro_vs_none.
"""

from __future__ import annotations

import io
import json
import statistics
import time
from collections import deque
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import _harness
import fastavro

import engine
import native
from engine.schemas.types import AVRO, JSON, RegisteredSchema, SchemaReference
from engine.schemas.wire_format import frame
from native import RecordSpec

RECORDS_PER_BATCH = 100
IN_FLIGHT = 64
PHASES = ("none", "id", "full_json", "full_avro")

ORDER = {"id": "order-000123", "customer": "c-42", "amount": 1999, "currency": "EUR"}
JSON_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "customer": {"type": "string"},
        "amount": {"type": "integer", "minimum": 0},
        "currency": {"type": "string", "enum": ["EUR", "USD", "GBP"]},
    },
    "required": ["id", "customer", "amount", "currency"],
}
AVRO_SCHEMA = {
    "type": "record",
    "name": "Order",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "customer", "type": "string"},
        {"name": "amount", "type": "long"},
        {"name": "currency", "type": "string"},
    ],
}


class Schemas:
    """The two schemas the benchmark registers, by id."""

    def __init__(self) -> None:
        self.by = {
            1: RegisteredSchema(1, JSON, json.dumps(JSON_SCHEMA)),
            2: RegisteredSchema(2, AVRO, json.dumps(AVRO_SCHEMA)),
        }

    def by_id(self, schema_id: int) -> RegisteredSchema | None:
        return self.by.get(schema_id)

    def latest(self, subject: str) -> RegisteredSchema | None:
        return None

    def referenced(self, reference: SchemaReference) -> RegisteredSchema | None:
        return None  # neither schema refers to another


def values(phase: str) -> list[bytes]:
    """The batch's record values for a phase (each order its own id)."""
    out = []
    for i in range(RECORDS_PER_BATCH):
        order = {**ORDER, "id": f"order-{i:06d}"}
        if phase == "full_avro":
            body = io.BytesIO()
            fastavro.schemaless_writer(body, fastavro.parse_schema(AVRO_SCHEMA), order)
            out.append(frame(2, body.getvalue()))
        else:  # none: the same bytes as id and full_json, unchecked
            out.append(frame(1, json.dumps(order).encode()))
    return out


def produce(opened: engine.Engine, topic: str, batch: bytes, batches: int) -> float:
    """Seconds to append ``batches`` copies of ``batch``, each durable."""
    pending: deque[Future[Any]] = deque()
    started = time.perf_counter()
    for _ in range(batches):
        pending.append(opened.submit(topic, 0, batch))
        if len(pending) >= IN_FLIGHT:
            pending.popleft().result(60)
    while pending:
        pending.popleft().result(60)
    return time.perf_counter() - started


def run(directory: Path, batches: int, rounds: int) -> dict[str, Any]:
    mode = {"none": "none", "id": "id", "full_json": "full", "full_avro": "full"}
    with engine.open(directory / "node", config=engine.EngineConfig()) as opened:
        opened.schemas = Schemas()
        encoded = {}
        value_bytes = {}
        for phase in PHASES:
            opened.create_topic(phase, 1, {"tidelog.value.schema.validation": mode[phase]})
            batch_values = values(phase)
            encoded[phase] = native.encode_batch([RecordSpec(0, None, v) for v in batch_values])
            value_bytes[phase] = sum(len(v) for v in batch_values) * batches
        rates: dict[str, list[float]] = {phase: [] for phase in PHASES}
        for _ in range(rounds):
            for phase in PHASES:
                seconds = produce(opened, phase, encoded[phase], batches)
                rates[phase].append(value_bytes[phase] / seconds / 1e6)
    results: dict[str, Any] = {
        "native": native.IMPLEMENTATION,
        "batches": batches,
        "records_per_batch": RECORDS_PER_BATCH,
        "rounds": rounds,
        **_harness.cpus(),
    }
    for phase in PHASES:
        results[f"{phase}_mb_s"] = round(statistics.median(rates[phase]), 2)
        results[f"{phase}_rounds_mb_s"] = [round(r, 2) for r in rates[phase]]
        results[f"{phase}_records_s"] = round(
            results[f"{phase}_mb_s"] * 1e6 * batches * RECORDS_PER_BATCH / value_bytes[phase]
        )
    for phase in PHASES[1:]:
        ratio = results[f"{phase}_records_s"] / results["none_records_s"]
        results[f"{phase}_vs_none"] = round(ratio, 3)
    return results


def print_table(results: dict[str, Any]) -> None:
    print(
        f"produce to a validating topic ({results['batches']} batches of "
        f"{results['records_per_batch']} records per round, {results['rounds']} rounds, "
        f"native: {results['native']}, {results['cpus_usable']} usable CPUs)"
    )
    print(f"  {'phase':<10} {'MB/s':>8} {'records/s':>11} {'vs none':>8}")
    for phase in PHASES:
        ratio = results.get(f"{phase}_vs_none", 1.0)
        print(
            f"  {phase:<10} {results[f'{phase}_mb_s']:>8.2f} "
            f"{results[f'{phase}_records_s']:>11,} {ratio:>8.3f}"
        )


def main() -> None:
    parser = _harness.parser(__doc__, quick="200 batches per phase, one round")
    parser.add_argument("--batches", type=int, default=2000, help="batches per phase and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, the phases alternating")
    parser.add_argument("--data-dir", default=None, help="parent of the scratch directory")
    args = parser.parse_args()
    batches, rounds = (200, 1) if args.quick else (args.batches, args.rounds)
    with _harness.scratch(args.data_dir, "tidelog-validation-bench-") as scratch:
        results = run(scratch, batches, rounds)
    _harness.report(results, args.json, print_table)


if __name__ == "__main__":
    main()
