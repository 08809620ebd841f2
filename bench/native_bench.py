"""The hot loop in C beside its pure-Python twin, other libraries and the machine.

    python bench/native_bench.py [--quick] [--json]

- CRC32C: ours (C) vs the crc32c package vs zlib.crc32 (another polynomial:
  the machine's everyday CRC) vs memcpy (the memory bandwidth ceiling).
- validate (the produce path): ours in C and in Python vs what a Python broker
  would otherwise run, kafka-python's batch parser with CRC check.
- decode and encode (the embedded API): ours vs kafka-python.
- rewrite (offset assignment): ns per batch.
Each row's ratios compare figures measured in this run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import time
import zlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

import crc32c as crc32c_package
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from native import _pure
from native._crc32c_reference import crc32c_reference
from native.records import Compression, RecordSpec


def _load_c() -> ModuleType | None:
    try:
        return importlib.import_module("native._cnative")
    except ImportError:
        return None


def rate(function: Callable[[], object], budget: float) -> float:
    """Calls per second: the best of three runs of about budget/3 seconds each."""
    calls = 1
    while True:  # size a run so one takes a measurable time
        began = time.perf_counter()
        for _ in range(calls):
            function()
        elapsed = time.perf_counter() - began
        if elapsed > budget / 30:
            break
        calls *= 4
    per_run = max(1, int(calls * (budget / 3) / elapsed))
    best = float("inf")
    for _ in range(3):
        began = time.perf_counter()
        for _ in range(per_run):
            function()
        best = min(best, time.perf_counter() - began)
    return per_run / best


def crc_rows(c: ModuleType | None, budget: float) -> list[dict[str, Any]]:
    rows = []
    for size in (64, 1024, 64 * 1024, 1 << 20):
        data = os.urandom(size)
        target = bytearray(size)

        def copy(data: bytes = data, target: bytearray = target) -> None:
            target[:] = data

        row: dict[str, Any] = {"size": size}
        row["memcpy_gb_s"] = rate(copy, budget) * size / 1e9
        row["crc32c_package_gb_s"] = (
            rate(lambda d=data: crc32c_package.crc32c(d), budget) * size / 1e9
        )
        row["zlib_crc32_gb_s"] = rate(lambda d=data: zlib.crc32(d), budget) * size / 1e9
        if c is not None:
            row["tidelog_c_gb_s"] = rate(lambda d=data: c.crc32c(d), budget) * size / 1e9
        if size <= 1024:
            row["python_reference_gb_s"] = (
                rate(lambda d=data: crc32c_reference(d), budget) * size / 1e9
            )
        rows.append(row)
    return rows


def sample_specs(count: int, value_size: int) -> list[RecordSpec]:
    value = (b"agent tool call: lookup_order " * 10)[:value_size]
    return [
        RecordSpec(1_760_000_000_000 + i, b"order-%06d" % i, value, (("trace", b"t-%d" % i),))
        for i in range(count)
    ]


def kafka_python_build(specs: list[RecordSpec], codec: int) -> bytes:
    builder = DefaultRecordBatchBuilder(2, codec, False, -1, -1, -1, 1 << 30)
    for i, spec in enumerate(specs):
        builder.append(i, spec.timestamp, spec.key, spec.value, list(spec.headers))
    return bytes(builder.build())


def kafka_python_validate(buffer: bytes, size: int) -> None:
    for position in range(0, len(buffer), size):
        batch = DefaultRecordBatch(bytearray(buffer[position : position + size]))
        if not batch.validate_crc():
            raise ValueError("bad CRC")
        _ = (batch.base_offset, batch.last_offset_delta, batch.producer_id)


def batch_rows(c: ModuleType | None, budget: float) -> list[dict[str, Any]]:
    specs = sample_specs(100, 150)
    implementations = [("python", _pure)] + ([("c", c)] if c is not None else [])
    return [
        batch_row(implementations, specs, codec, budget)
        for codec in (Compression.NONE, Compression.LZ4)
    ]


def batch_row(
    implementations: list[tuple[str, ModuleType]],
    specs: list[RecordSpec],
    codec: Compression,
    budget: float,
) -> dict[str, Any]:
    batch = _pure.encode_batch(specs, compression=codec)
    buffer = batch * 64
    row: dict[str, Any] = {"codec": codec.name.lower(), "batch_bytes": len(batch)}
    row["kafka_python_validate_mb_s"] = (
        rate(lambda: kafka_python_validate(buffer, len(batch)), budget) * len(buffer) / 1e6
    )
    row["kafka_python_decode_records_s"] = rate(
        lambda: list(DefaultRecordBatch(bytearray(batch))), budget
    ) * len(specs)
    row["kafka_python_encode_records_s"] = rate(
        lambda: kafka_python_build(specs, int(codec)), budget
    ) * len(specs)
    for name, module in implementations:
        row[f"{name}_validate_mb_s"] = (
            rate(lambda m=module: m.validate_batches(buffer), budget) * len(buffer) / 1e6
        )
        row[f"{name}_decode_records_s"] = rate(
            lambda m=module: m.decode_records(batch), budget
        ) * len(specs)
        row[f"{name}_encode_records_s"] = rate(
            lambda m=module: m.encode_batch(specs, compression=codec), budget
        ) * len(specs)
    return row


def rewrite_rows(c: ModuleType | None, budget: float) -> dict[str, float]:
    buffer = bytearray(_pure.encode_batch(sample_specs(100, 150)))
    out = {}
    for name, module in [("python", _pure)] + ([("c", c)] if c is not None else []):
        out[f"{name}_offset_ns"] = 1e9 / rate(
            lambda m=module: m.rewrite_batch(buffer, 0, 12345), budget
        )
        out[f"{name}_log_append_time_ns"] = 1e9 / rate(
            lambda m=module: m.rewrite_batch(buffer, 0, 12345, log_append_time=1), budget
        )
    return out


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def print_report(report: dict[str, Any]) -> None:
    print(f"C extension: {report['c_extension']}  CRC32C backend: {report['crc32c_backend']}\n")
    print("CRC32C (GB/s)")
    print(f"{'size':>8} {'tidelog C':>10} {'crc32c pkg':>10} {'zlib.crc32':>10} {'memcpy':>8} "
          f"{'C/pkg':>7} {'C/memcpy':>8} {'py ref':>8}")  # fmt: skip
    for row in report["crc32c"]:
        c = row.get("tidelog_c_gb_s")
        print(
            f"{row['size']:>8} {c or 0:>10.2f} {row['crc32c_package_gb_s']:>10.2f} "
            f"{row['zlib_crc32_gb_s']:>10.2f} {row['memcpy_gb_s']:>8.2f} "
            f"{ratio(c, row['crc32c_package_gb_s']):>7} {ratio(c, row['memcpy_gb_s']):>8} "
            f"{row.get('python_reference_gb_s', 0):>8.4f}"
        )
    print("\nRecord batches of 100 x 150 B records (validate over 64 batches)")
    for row in report["batches"]:
        print(f"  codec={row['codec']} ({row['batch_bytes']} B per batch)")
        for what, unit in (("validate", "mb_s"), ("decode", "records_s"), ("encode", "records_s")):
            theirs = row[f"kafka_python_{what}_{unit}"]
            c = row.get(f"c_{what}_{unit}")
            py = row[f"python_{what}_{unit}"]
            label = "MB/s" if unit == "mb_s" else "records/s"
            print(
                f"    {what:<8} C {c or 0:>14,.0f}  python {py:>12,.0f}  "
                f"kafka-python {theirs:>12,.0f} {label:<9}  "
                f"C/python {ratio(c, py):>8}  C/kafka-python {ratio(c, theirs):>8}"
            )
    rewrite = report["rewrite"]
    print("\nrewrite_batch (ns per batch)")
    print(
        f"  offset only:        C {rewrite.get('c_offset_ns', 0):>8.0f}  "
        f"python {rewrite['python_offset_ns']:>8.0f}"
    )
    print(
        f"  + LogAppendTime:    C {rewrite.get('c_log_append_time_ns', 0):>8.0f}  "
        f"python {rewrite['python_log_append_time_ns']:>8.0f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds in all")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args()
    budget = 0.05 if args.quick else 0.4
    c = _load_c()
    report = {
        "c_extension": "built" if c is not None else "not built",
        "crc32c_backend": c.crc32c_backend() if c is not None else _pure.crc32c_backend(),
        "crc32c": crc_rows(c, budget),
        "batches": batch_rows(c, budget),
        "rewrite": rewrite_rows(c, budget),
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
