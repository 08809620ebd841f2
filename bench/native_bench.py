"""The native hot loop in C beside its pure-Python twin, other libraries and the machine.

    python bench/native_bench.py [--quick] [--json]

- CRC32C: ours in C vs the crc32c package vs zlib.crc32 (another polynomial:
  the machine's everyday CRC) vs memcpy into a preallocated bytearray (the
  memory bandwidth ceiling); the table-driven pure-Python reference on small
  sizes only. Every figure includes one Python call, so at 64 B all of them
  measure call overhead as much as bytes; memcpy reads and writes, a CRC only
  reads, so a CRC may pass memcpy on large buffers.
- validate_batches (the produce path): ours in C and in Python vs what a Python
  broker would otherwise run, kafka-python's MemoryRecords walk with
  validate_crc() and a header read per batch. For lz4 ours also inflates and
  walks every record, which kafka-python's walk does not.
- decode_records and encode_batch (the embedded API): ours vs kafka-python.
- validate_batches on a client's compressed batch (lz4, zstd, gzip, snappy):
  inflating it, bounded, and walking every record, beside the same batch
  checked the way the produce path did before records were walked (header,
  CRC, count: ``from_client=False``) and beside the codec's decompression
  alone, so ``walk_vs_headers`` is what the record walk costs and
  ``decompress_share`` how much of it is the library's.
- inflating a batch as large as the default limit (32 MiB of records, gzip
  and lz4), bounded and in steps, beside the library's own one-shot
  decompression of the same bytes: the steps must cost a constant factor,
  never one that grows with the output.
- rewrite_batch (offset assignment on produce): ns per batch (the offset alone;
  a LogAppendTime stamp; a maxTimestamp not the claimed one), beside copying
  the batch and CRC32C over it, the two costs it is made of at most.

Payloads are realistic produce requests: batches of 100 records of 150 B
(about 16 KiB uncompressed), uncompressed and lz4. Every ratio compares
figures measured in this same run.
"""

from __future__ import annotations

import importlib
import itertools
import os
import platform
import time
import zlib
from collections.abc import Callable
from functools import partial
from importlib import metadata
from types import ModuleType
from typing import Any

import _harness
import crc32c as crc32c_package
import lz4.frame
from kafka.record import MemoryRecords
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from native import _pure, compression
from native._crc32c_reference import crc32c_reference
from native.records import Compression, RecordSpec

CRC_SIZES = (64, 1024, 64 * 1024, 1 << 20)
REFERENCE_MAX_SIZE = 1024  # the pure-Python table CRC takes seconds beyond this
RECORDS_PER_BATCH = 100
RECORD_VALUE_SIZE = 150
BATCHES_PER_REQUEST = 64


def _load_c() -> ModuleType | None:
    try:
        return importlib.import_module("native._cnative")
    except ImportError:
        return None


def rate(function: Callable[[], object], budget: float) -> float:
    """Calls per second: the best of three runs of about budget/3 seconds each."""
    calls = 1
    while True:  # size a run so that one takes a measurable time
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
    for size in CRC_SIZES:
        data = os.urandom(size)
        target = bytearray(size)

        def copy(data: bytes = data, target: bytearray = target) -> None:
            target[:] = data

        def gb_s(function: Callable[[], object], size: int = size) -> float:
            return rate(function, budget) * size / 1e9

        row: dict[str, Any] = {"size": size}
        row["c_gb_s"] = gb_s(partial(c.crc32c, data)) if c is not None else None
        row["crc32c_package_gb_s"] = gb_s(partial(crc32c_package.crc32c, data))
        row["zlib_crc32_gb_s"] = gb_s(partial(zlib.crc32, data))
        row["memcpy_gb_s"] = gb_s(copy)
        row["python_reference_gb_s"] = (
            gb_s(partial(crc32c_reference, data)) if size <= REFERENCE_MAX_SIZE else None
        )
        rows.append(row)
    return rows


def sample_specs() -> list[RecordSpec]:
    """Agent-memory-like records: a keyed JSON-ish value and a trace header."""
    value = (b'{"tool":"lookup_order","args":{"id":12345},"verdict":"allow"} ' * 3)[
        :RECORD_VALUE_SIZE
    ]
    return [
        RecordSpec(1_760_000_000_000 + i, b"order-%06d" % i, value, (("trace", b"t-%06d" % i),))
        for i in range(RECORDS_PER_BATCH)
    ]


def kafka_python_build(specs: list[RecordSpec], codec: int) -> bytes:
    builder = DefaultRecordBatchBuilder(2, codec, False, -1, -1, -1, 1 << 30)
    for i, spec in enumerate(specs):
        builder.append(i, spec.timestamp, spec.key, spec.value, list(spec.headers))
    return bytes(builder.build())


def kafka_python_validate(buffer: bytes) -> int:
    """What a broker written with kafka-python's record code would run per request."""
    batches = 0
    records = MemoryRecords(buffer)
    while records.has_next():
        batch = records.next_batch()
        if not batch.validate_crc():
            raise ValueError("bad CRC")
        _ = (batch.base_offset, batch.last_offset_delta, batch.records_count, batch.producer_id)
        batches += 1
    return batches


def kafka_python_decode(batch: bytes) -> list[tuple[Any, ...]]:
    return [(r.offset, r.timestamp, r.key, r.value, r.headers) for r in DefaultRecordBatch(batch)]


def batch_rows(c: ModuleType | None, budget: float) -> list[dict[str, Any]]:
    specs = sample_specs()
    rows = []
    for codec in (Compression.NONE, Compression.LZ4):
        batch = _pure.encode_batch(specs, compression=codec)
        buffer = batch * BATCHES_PER_REQUEST
        if kafka_python_validate(buffer) != BATCHES_PER_REQUEST:
            raise AssertionError("kafka-python does not read the sample batches")
        row: dict[str, Any] = {"codec": codec.name.lower(), "batch_bytes": len(batch)}
        contenders: list[tuple[str, dict[str, Callable[[], object]] | None]] = [
            (
                "kafka_python",
                {
                    "validate": partial(kafka_python_validate, buffer),
                    "decode": partial(kafka_python_decode, batch),
                    "encode": partial(kafka_python_build, specs, int(codec)),
                },
            )
        ]
        for name, module in (("python", _pure), ("c", c)):
            contenders.append(
                (
                    name,
                    None
                    if module is None
                    else {
                        "validate": partial(module.validate_batches, buffer),
                        "decode": partial(module.decode_records, batch),
                        "encode": partial(module.encode_batch, specs, compression=codec),
                    },
                )
            )
        for name, functions in contenders:
            if functions is None:
                row[name] = None
                continue
            validates = rate(functions["validate"], budget)
            row[name] = {
                "validate_mb_s": validates * len(buffer) / 1e6,
                "validate_batches_s": validates * BATCHES_PER_REQUEST,
                "decode_records_s": rate(functions["decode"], budget) * len(specs),
                "encode_records_s": rate(functions["encode"], budget) * len(specs),
            }
        rows.append(row)
    return rows


COMPRESSED_CODECS = (Compression.LZ4, Compression.ZSTD, Compression.GZIP, Compression.SNAPPY)
COMPRESSED_BATCH_RECORDS = (100, 1000)
"""About 16 KiB and 160 KiB of records: librdkafka's and Java's usual batches."""


def compressed_validation_rows(c: ModuleType | None, budget: float) -> list[dict[str, Any]]:
    """The record walk of a client's compressed batch, in MB/s of records."""
    module = c if c is not None else _pure
    base = sample_specs()[0]
    rows = []
    for count in COMPRESSED_BATCH_RECORDS:
        specs = [base._replace(timestamp=base.timestamp + i, key=b"k-%d" % i) for i in range(count)]
        records_bytes = len(_pure.encode_batch(specs)) - 61
        for codec in COMPRESSED_CODECS:
            batch = _pure.encode_batch(specs, compression=codec)
            area = batch[61:]
            walk = rate(partial(module.validate_batches, batch), budget)
            headers = rate(partial(module.validate_batches, batch, from_client=False), budget)
            inflate = rate(partial(compression.decompress, codec, area, 1 << 25), budget)
            rows.append(
                {
                    "codec": codec.name.lower(),
                    "records": count,
                    "records_bytes": records_bytes,
                    "batch_bytes": len(batch),
                    "implementation": "c" if c is not None else "python",
                    "walk_mb_s": walk * records_bytes / 1e6,
                    "headers_mb_s": headers * records_bytes / 1e6,
                    "decompress_mb_s": inflate * records_bytes / 1e6,
                    "walk_vs_headers": headers / walk,
                    "decompress_share": walk / inflate,
                }
            )
    return rows


LARGE_INFLATION_BYTES = 32 * 1024 * 1024
ONE_SHOT: dict[Compression, Callable[[bytes], bytes]] = {
    Compression.GZIP: partial(zlib.decompress, wbits=47),
    Compression.LZ4: lz4.frame.decompress,
}


def large_inflation_rows(budget: float) -> list[dict[str, Any]]:
    """Bounded, stepped inflation of 32 MiB of records vs the library's one shot."""
    specs = [RecordSpec(1_700_000_000_000 + i, b"k-%d" % i, bytes(150)) for i in range(1000)]
    records = _pure.encode_batch(specs)[61:]
    area = records * (LARGE_INFLATION_BYTES // len(records))
    rows = []
    for codec, one_shot in ONE_SHOT.items():
        packed = compression.compress(codec, area)
        bounded = rate(partial(compression.decompress, codec, packed, len(area)), budget)
        library = rate(partial(one_shot, packed), budget)
        rows.append(
            {
                "codec": codec.name.lower(),
                "inflated_bytes": len(area),
                "compressed_bytes": len(packed),
                "bounded_mb_s": bounded * len(area) / 1e6,
                "one_shot_mb_s": library * len(area) / 1e6,
                "bounded_vs_one_shot": library / bounded,
            }
        )
    return rows


def print_large_inflation(rows: list[dict[str, Any]]) -> None:
    print("\nInflating 32 MiB of records: bounded, in steps, vs the library's one shot (MB/s)")
    print(f"  {'codec':<7} {'compressed B':>12} {'bounded':>9} {'one shot':>9} {'cost':>6}")
    for row in rows:
        print(
            f"  {row['codec']:<7} {row['compressed_bytes']:>12,} {row['bounded_mb_s']:>9,.0f} "
            f"{row['one_shot_mb_s']:>9,.0f} {row['bounded_vs_one_shot']:>5.1f}x"
        )


def rewrite_rows(c: ModuleType | None, budget: float) -> dict[str, Any]:
    batch = _pure.encode_batch(sample_specs())
    buffer = bytearray(batch)
    crc_area = memoryview(batch)[21:]
    out: dict[str, Any] = {
        "batch_bytes": len(batch),
        "copy_batch_ns": 1e9 / rate(partial(bytes, buffer), budget),
        "crc32c_package_over_batch_ns": 1e9
        / rate(partial(crc32c_package.crc32c, crc_area), budget),
    }
    for name, module in (("python", _pure), ("c", c)):
        if module is None:
            out[name] = None
            continue
        # The stamp and the max alternate: every call changes the header and
        # rewrites its CRC, as a produce to a LogAppendTime topic does, and as
        # a CreateTime batch whose claimed maxTimestamp is not its records'
        # largest does (rewrite_batch leaves a header that would not change).
        out[name] = {
            "offset_ns": 1e9 / rate(partial(module.rewrite_batch, buffer, 0, 12345), budget),
            "log_append_time_ns": 1e9
            / rate(_alternating(module, buffer, "log_append_time"), budget),
            "max_timestamp_ns": 1e9 / rate(_alternating(module, buffer, "max_timestamp"), budget),
        }
    return out


def _alternating(module: ModuleType, buffer: bytearray, field: str) -> Callable[[], object]:
    """rewrite_batch with ``field`` 1, then 2, then 1 ...: never the header's."""
    values = itertools.cycle((1, 2))
    rewrite = module.rewrite_batch
    return lambda: rewrite(buffer, 0, 12345, **{field: next(values)})


def environment(c: ModuleType | None, quick: bool) -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "c_extension": c is not None,
        "crc32c_backend_c": c.crc32c_backend() if c is not None else None,
        "crc32c_backend_python": _pure.crc32c_backend(),
        "kafka_python": metadata.version("kafka-python"),
        "crc32c_package": metadata.version("crc32c"),
        "quick": quick,
    }


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def _get(row: dict[str, Any], who: str, field: str) -> float | None:
    figures = row.get(who)
    return None if figures is None else float(figures[field])


def print_report(report: dict[str, Any]) -> None:
    env = report["environment"]
    c_state = f"built, CRC32C via {env['crc32c_backend_c']}" if env["c_extension"] else "NOT BUILT"
    print(
        f"native C extension: {c_state}; Python {env['python']} on {env['machine']}, "
        f"{env['cpus']} CPUs; kafka-python {env['kafka_python']}, "
        f"crc32c {env['crc32c_package']}{' (quick run)' if env['quick'] else ''}\n"
    )
    print("CRC32C, GB/s (one Python call per buffer)")
    print(
        f"{'size':>9} {'C':>7} {'crc32c':>7} {'zlib':>7} {'memcpy':>7} {'py ref':>7}"
        f" {'C/crc32c':>9} {'C/zlib':>7} {'C/memcpy':>9}"
    )
    for row in report["crc32c"]:
        c = row["c_gb_s"]
        print(
            f"{row['size']:>9,} {_num(c):>7} {_num(row['crc32c_package_gb_s']):>7} "
            f"{_num(row['zlib_crc32_gb_s']):>7} {_num(row['memcpy_gb_s']):>7} "
            f"{_num(row['python_reference_gb_s'], 4):>7} "
            f"{_ratio(c, row['crc32c_package_gb_s']):>9} {_ratio(c, row['zlib_crc32_gb_s']):>7} "
            f"{_ratio(c, row['memcpy_gb_s']):>9}"
        )
    print(
        f"\nRecord batches: {RECORDS_PER_BATCH} records of {RECORD_VALUE_SIZE} B; "
        f"validate runs over {BATCHES_PER_REQUEST} batches at a time"
    )
    print(
        f"{'codec':<6} {'figure':<18} {'C':>12} {'python':>12} {'kafka-python':>13}"
        f" {'C/python':>9} {'C/kafka-py':>11} {'python/kafka-py':>16}"
    )
    figures = (
        ("validate MB/s", "validate_mb_s"),
        ("validate batches/s", "validate_batches_s"),
        ("decode records/s", "decode_records_s"),
        ("encode records/s", "encode_records_s"),
    )
    for row in report["batches"]:
        for label, field in figures:
            c, py, kp = (_get(row, who, field) for who in ("c", "python", "kafka_python"))
            print(
                f"{row['codec']:<6} {label:<18} {_num(c, 0):>12} {_num(py, 0):>12} "
                f"{_num(kp, 0):>13} {_ratio(c, py):>9} {_ratio(c, kp):>11} {_ratio(py, kp):>16}"
            )
        print(f"{'':<6} (one batch is {row['batch_bytes']:,} B)")
    rewrite = report["rewrite"]
    print(
        f"\nrewrite_batch, ns per {rewrite['batch_bytes']:,} B batch "
        f"(beside: copying the batch {rewrite['copy_batch_ns']:,.0f} ns, "
        f"crc32c package over it {rewrite['crc32c_package_over_batch_ns']:,.0f} ns)"
    )
    print(f"{'':<22} {'C':>8} {'python':>8} {'python/C':>9} {'copy/C':>7}")
    rewrites = (
        ("baseOffset only", "offset_ns"),
        ("+ LogAppendTime, CRC", "log_append_time_ns"),
        ("+ maxTimestamp, CRC", "max_timestamp_ns"),
    )
    for label, field in rewrites:
        c, py = _get(rewrite, "c", field), _get(rewrite, "python", field)
        # Times, not rates: the faster side is the smaller figure.
        print(
            f"{label:<22} {_num(c, 0):>8} {_num(py, 0):>8} {_ratio(py, c):>9} "
            f"{_ratio(rewrite['copy_batch_ns'], c):>7}"
        )
    if not env["c_extension"]:
        print("\nnative._cnative is not built: its columns are empty (pip install -e . builds it)")


TARGETS = {
    "crc_vs_pkg": 0.9,
    "validate_gb_s": 5.0,
    "decode_c_vs_py": 10.0,
    "decode_records_per_s_c": 2_000_000.0,
}


def headline(c: ModuleType | None, budget: float) -> dict[str, Any]:
    """The figures the targets name, each beside its baseline from this run.

    CRC32C on one 1 MiB buffer; validation over 1 MiB of ~16 KiB uncompressed
    batches; decode of batches of 1 KiB records.
    """
    buffer = os.urandom(1 << 20)
    specs = [RecordSpec(1_760_000_000_000 + i, b"key-%d" % i, os.urandom(1024)) for i in range(15)]
    batch = _pure.encode_batch(specs)
    batches = batch * ((1 << 20) // len(batch))
    figures: dict[str, Any] = {
        "crc32c_pkg_gb_s": rate(lambda: crc32c_package.crc32c(buffer), budget) * len(buffer) / 1e9,
        "decode_records_per_s_py": rate(lambda: _pure.decode_records(batch), budget) * len(specs),
    }
    if c is None:
        figures.update(dict.fromkeys(
            ("crc32c_gb_s", "validate_gb_s", "decode_records_per_s_c", "crc_vs_pkg",
             "decode_c_vs_py"), None))  # fmt: skip
    else:
        figures["crc32c_gb_s"] = rate(lambda: c.crc32c(buffer), budget) * len(buffer) / 1e9
        figures["validate_gb_s"] = (
            rate(lambda: c.validate_batches(batches), budget) * len(batches) / 1e9
        )
        figures["decode_records_per_s_c"] = rate(lambda: c.decode_records(batch), budget) * len(
            specs
        )
        figures["crc_vs_pkg"] = figures["crc32c_gb_s"] / figures["crc32c_pkg_gb_s"]
        figures["decode_c_vs_py"] = (
            figures["decode_records_per_s_c"] / figures["decode_records_per_s_py"]
        )
    figures["targets"] = {
        f"{key}>={target:.10g}": figures[key] is not None and figures[key] >= target
        for key, target in TARGETS.items()
    }
    return figures


def print_compressed_validation(rows: list[dict[str, Any]]) -> None:
    print(
        "\nvalidate_batches on a client's compressed batch (inflate + record walk), "
        f"{rows[0]['implementation']}, MB/s of records"
    )
    print(
        f"  {'codec':<7} {'records':>7} {'batch B':>8} {'walk':>9} {'headers':>9} "
        f"{'decompress':>10} {'walk cost':>9} {'decompress share':>16}"
    )
    for row in rows:
        print(
            f"  {row['codec']:<7} {row['records']:>7} {row['batch_bytes']:>8} "
            f"{row['walk_mb_s']:>9,.0f} {row['headers_mb_s']:>9,.0f} "
            f"{row['decompress_mb_s']:>10,.0f} {row['walk_vs_headers']:>8.1f}x "
            f"{row['decompress_share']:>15.0%}"
        )


def print_headline(figures: dict[str, Any]) -> None:
    print("\nTargets")
    for key, target in TARGETS.items():
        value = figures[key]
        shown = "-" if value is None else f"{value:,.2f}"
        met = figures["targets"][f"{key}>={target:.10g}"]
        print(f"  {key:<24} {shown:>14}  target >= {target:,.10g}  {'met' if met else 'NOT met'}")


def main() -> int:
    parser = _harness.parser(__doc__, quick="a few seconds in all")
    args = parser.parse_args()
    budget = 0.03 if args.quick else 0.5
    c = _load_c()
    began = time.perf_counter()
    report: dict[str, Any] = {
        "environment": environment(c, args.quick),
        "crc32c": crc_rows(c, budget),
        "batches": batch_rows(c, budget),
        "rewrite": rewrite_rows(c, budget),
        "compressed_validation": compressed_validation_rows(c, budget),
        "large_inflation": large_inflation_rows(budget),
    }
    report.update(headline(c, budget))
    report["seconds"] = round(time.perf_counter() - began, 1)
    _harness.report(report, args.json, print_all, indent=2)
    return 0


def print_all(report: dict[str, Any]) -> None:
    print_report(report)
    print_compressed_validation(report["compressed_validation"])
    print_large_inflation(report["large_inflation"])
    print_headline(report)
    print(f"\n({report['seconds']} s)")


if __name__ == "__main__":
    raise SystemExit(main())
