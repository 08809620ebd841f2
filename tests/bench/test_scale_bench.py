"""bench/scale_bench.py at its smallest: the latency histograms its clients
hand back, history written straight into a store and served after, and
one fan-out run (a server and librdkafka's mock cluster, a producer, two
consumers in a child process)."""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from s3stream.errors import ConfigOutOfRange
from tests.bench.run import load_bench

MiB = 1024 * 1024


def _load(name: str) -> ModuleType:
    return load_bench(f"{name}.py", name)


def test_latency_histograms_add_up_and_give_quantiles_per_window() -> None:
    clients = _load("_scale_clients")
    bucket = clients.BUCKET_S
    # Produced at 100.0-100.1 s: 99 records at 1 ms and one at 50 ms; at
    # 100.1-100.2 s: 10 at 7 ms.
    first = {clients.slot_of(100.05): Counter({int(0.001 / bucket): 99, int(0.050 / bucket): 1})}
    second = {clients.slot_of(100.15): Counter({int(0.007 / bucket): 10})}
    both = clients.merge([first, second])
    assert sum(both.values()) == 110
    assert clients.quantile(clients.merge([first]), 0.5) == 1.05  # the bucket's middle
    assert clients.quantile(clients.merge([first]), 0.99) == 50.05
    # A window keeps the slots wholly inside it.
    assert sum(clients.merge([first, second], start=100.09).values()) == 10
    assert sum(clients.merge([first, second], end=100.11).values()) == 100
    assert sum(clients.merge([first, second], start=100.01, end=100.19).values()) == 0
    assert clients.quantile(Counter(), 0.99) == 0.0
    # What a child prints comes back the same.
    assert clients.from_wire(clients.to_wire(first)) == first


def test_history_written_into_the_store_is_served_with_dense_offsets(tmp_path: Path) -> None:
    import engine

    history = _load("_scale_history")
    data = tmp_path / "data"
    streams = history.create_topics(data, {"history": 2, "live": 1})
    made = history.write_history(data, streams["history"], 2 * MiB, 256 * 1024)
    assert made.bytes == 2 * MiB
    assert made.objects >= 2  # objects of about 256 KiB (a block seals once past it)
    assert made.manifest_bytes > 0 and made.commit_ms > 0
    assert history.settle(data) > 0
    per_batch = history.BATCH_RECORDS
    with engine.open(data) as opened:
        for partition in range(2):
            start, end = opened.offsets("history", partition)
            assert (start, end) == (0, MiB // history.RECORD_BYTES)
            offset, values = 0, 0
            while offset < end:
                fetched = opened.fetch("history", partition, offset)
                for batch in fetched.records:
                    assert int.from_bytes(bytes(batch[:8]), "big") == offset  # its base offset
                    offset += per_batch
                    values += per_batch
            assert values == end
        assert opened.offsets("live", 0) == (0, 0)


def test_a_solo_replay_reports_the_servers_cpu_over_it(tmp_path: Path) -> None:
    history, scale = _load("_scale_history"), _load("scale_bench")
    data = tmp_path / "data"
    streams = history.create_topics(data, {"history": 2})
    # Enough that the server's CPU over the replay spans several of the
    # clock's 10 ms ticks.
    history.write_history(data, streams["history"], 32 * MiB, 8 * MiB)
    history.settle(data)
    alone = scale.solo_replay(tmp_path, data, 0.0, None)
    assert alone["complete"] and alone["bytes"] == 32 * MiB
    assert alone["server_cpu_seconds"] > 0
    assert scale.server_us_per_mib(0.4, 400 * MiB) == 1000.0


def test_a_replay_reader_reads_only_once_told_to_go(tmp_path: Path) -> None:
    history, scale, parts = _load("_scale_history"), _load("scale_bench"), _load("_scale_parts")
    data = tmp_path / "data"
    streams = history.create_topics(data, {"history": 1})
    history.write_history(data, streams["history"], 2 * MiB, 256 * 1024)
    history.settle(data)
    with parts.Server(tmp_path, data) as server:
        reader = parts.ClientProcess("replay", server.address, "history")
        reader.wait_ready()
        # Ready: connected and the watermarks known, yet nothing read: the
        # burst's window before a replay opens only now.
        time.sleep(0.5)
        told = time.time()
        reader.go()
        replayed = reader.result()
    assert replayed["complete"] and replayed["bytes"] == 2 * MiB
    assert replayed["started"] >= told
    assert scale.solo_replay(tmp_path, data, 0.0, None)["complete"]


def test_a_bursts_phase_is_taken_over_every_rounds_window() -> None:
    clients, scale = _load("_scale_clients"), _load("scale_bench")
    bucket = clients.BUCKET_S
    # Records produced in three tenths of a second: one round's window
    # holds the first, the next round's the third; the one between (a
    # replay's, say) belongs to neither.
    slots = {
        clients.slot_of(10.05): Counter({int(0.002 / bucket): 50}),
        clients.slot_of(10.15): Counter({int(0.090 / bucket): 50}),
        clients.slot_of(20.05): Counter({int(0.004 / bucket): 50}),
    }
    phase = scale._Phase()
    phase.add(9.99, 10.11, {"waited_ms_per_s": 100.0})
    phase.add(19.99, 20.29, {"waited_ms_per_s": 16.0})
    merged = scale._merged([slots], phase.windows)
    assert sum(merged.values()) == 100
    assert clients.quantile(merged, 0.99) == 4.05
    assert phase.seconds == pytest.approx(0.42)
    # Each window's schedstat figure counts by its length: (12 + 4.8) / 0.42.
    assert phase.run_queue_per_s() == {"waited_ms_per_s": 40.0}
    # The machine's other processes: what the server and the clients left
    # of its busy time.
    phase.add_cpu({"machine": 0.3, "server": 0.05, "live_clients": 0.02, "replay_client": 0.0})
    phase.add_cpu({"machine": 0.12, "server": 0.034, "live_clients": 0.022, "replay_client": 0.1})
    assert phase.cores() == {
        "machine": 1.0,
        "server": 0.2,
        "live_clients": 0.1,
        "replay_client": 0.24,
        "others": 0.46,
    }


@pytest.fixture(scope="module")
def fanout_result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One small fan-out run (tidelog and the mock cluster), for the tests below."""
    scale = _load("scale_bench")
    sizes = dataclasses.replace(scale.QUICK, rate_mb=0.1, fanout=(1, 2), fanout_seconds=1.5)
    result: dict[str, Any] = scale.fanout(tmp_path_factory.mktemp("fanout"), sizes)
    return result


def test_a_fanout_run_delivers_every_record_to_every_consumer(
    fanout_result: dict[str, Any],
) -> None:
    result = fanout_result
    assert result["kept_up"] is True
    assert result["tail_object_reads"] == 0  # tail reads are answered by the log cache
    for n in (1, 2):
        run = result[f"n{n}"]
        assert run["produced"] > 50
        assert 0 < run["p50_ms"] <= run["p99_ms"]
        assert run["consumer_mb_s_min"] > 0
        # A consumer of 0.1 MB/s uses about a hundredth of a core: held back
        # by a loaded machine, it may use less than the 0.005 that shows.
        assert run["server_cores"] > 0 and run["consumer_cores"] >= 0
        assert run["loop_waited_ms_per_s"] >= 0
    assert result["p99_vs_n1"] == result["p99_n2_vs_n1"] > 0
    assert result["p99_curve"] == [[1, result["n1"]["p99_ms"]], [2, result["n2"]["p99_ms"]]]


def test_a_fanout_run_measures_the_same_clients_against_the_mock_cluster(
    fanout_result: dict[str, Any],
) -> None:
    result = fanout_result
    for n in (1, 2):
        mock = result[f"mock_n{n}"]
        # Every record reached every consumer of the mock too, and promptly:
        # at fetch.wait.max.ms 100 the mock's p50 would be about 50 ms.
        assert mock["kept_up"] is True
        assert mock["produced"] > 50
        assert 0 < mock["p50_ms"] <= mock["p99_ms"]
        assert mock["p50_ms"] < 40
        assert mock["object_reads"] == mock["gets"] == 0
        assert result[f"p99_vs_mock_n{n}"] == round(result[f"n{n}"]["p99_ms"] / mock["p99_ms"], 2)
    assert result["p99_vs_mock"] == result["p99_vs_mock_n2"]
    assert result["p99_vs_n1_floor"] == round(
        result["mock_n2"]["p99_ms"] / result["n1"]["p99_ms"], 2
    )
    binds = "clients" if result["p99_vs_n1_floor"] > 2 else "target"
    assert result["binding_ceiling"] == binds


@pytest.mark.parametrize(
    ("server", "waited_ms_per_s", "replay_client", "binding"),
    [
        (0.7, 100.0, 0.6, "none"),  # 0.8 wanted, 1.0 left to it
        (0.7, 500.0, 0.6, "clients"),  # 1.2 wanted: fits in 1.6, not beside the client's 0.6
        (1.5, 300.0, 0.3, "server"),  # 1.8 wanted: more than 1.6 even without the client
    ],
)
def test_the_burst_tells_which_cores_bind_the_server_during_the_replay(
    server: float, waited_ms_per_s: float, replay_client: float, binding: str
) -> None:
    scale = _load("scale_bench")
    # Two cores: the live clients take 0.1 and other processes 0.3, which
    # leaves the server 1.6 without the replaying client.
    cores = {"machine": server + 0.1 + replay_client + 0.3, "server": server, "live_clients": 0.1}
    run_queue = {"ran_ms_per_s": 0.0, "waited_ms_per_s": waited_ms_per_s}
    figures = scale._cores_during(cores, replay_client, run_queue, usable=2)
    assert figures["other_cores_during"] == 0.3
    assert figures["cores_left_for_server_during"] == round(1.6 - replay_client, 2)
    assert figures["server_cores_wanted_during"] == round(server + waited_ms_per_s / 1000, 2)
    assert figures["binding_ceiling"] == binding


def _nice_of(child: Any) -> int:
    """The child's nice value, once nice(1) has exec'd it (its program is
    the client's then: nice's own command line names the client too)."""
    proc = Path(f"/proc/{child.process.pid}")
    deadline = time.monotonic() + 30
    while not _runs_the_client((proc / "cmdline").read_bytes().split(b"\0")):
        assert time.monotonic() < deadline, "the client did not start"
        time.sleep(0.01)
    return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[16])


def _runs_the_client(argv: list[bytes]) -> bool:
    return Path(argv[0].decode()).name != "nice" and any(
        arg.endswith(b"_scale_clients.py") for arg in argv
    )


def test_a_niced_client_process_runs_that_many_nice_values_lower() -> None:
    parts = _load("_scale_parts")
    # Nothing listens there: each child runs until it is killed.
    niced = parts.ClientProcess("replay", "127.0.0.1:1", "history", nice=7)
    plain = parts.ClientProcess("replay", "127.0.0.1:1", "history")
    try:
        assert _nice_of(niced) == _nice_of(plain) + 7
    finally:
        niced.kill()
        plain.kill()


def test_the_report_draws_one_plot_per_scale_scenario(tmp_path: Path) -> None:
    report = _load("report")
    fanout = {
        "rate_mb_s": 2.0,
        "consumers": [1, 4],
        "n1": {"p50_ms": 5.0, "p99_ms": 20.0},
        "n4": {"p50_ms": 6.0, "p99_ms": 30.0},
        "p99_vs_n1": 1.5,
    }
    burst = {
        "history_mib": 200,
        "replay_vs_solo": 0.8,
        "produce_p99_ms_before": 20.0,
        "produce_p99_ms_during": 30.0,
        "tail_p99_ms_before": 21.0,
        "tail_p99_ms_during": 31.0,
        "replay_timeline": [[0.0, 0.0], [1.0, 100.0]],
    }
    partitions = {"produce_curve": [[1, 2.0], [100, 1.9]], "consume_curve": [[1, 8.0], [100, 7.0]]}
    history = {
        "commit_ms_curve": [[2, 3.0], [801, 6.0]],
        "start_s_curve": [[2.0, 3.0], [200.0, 3.5]],
    }
    result = {"fanout": fanout, "burst": burst, "partitions": partitions, "history": history}
    built = {
        "started": "now",
        "quick": True,
        "machine": {"cpu_count": 2},
        "benches": [{"name": "scale", "command": [], "ok": True, "seconds": 1, "result": result}],
    }
    report.write(built, tmp_path)
    drawn = {path.name for path in tmp_path.glob("scale-*.png")}
    assert drawn == {
        "scale-fanout.png",
        "scale-burst.png",
        "scale-partitions.png",
        "scale-history.png",
    }
    assert "<h2>Scale</h2>" in (tmp_path / "report.html").read_text()
    # A run of some scenarios only draws those.
    assert [name for name, _ in report.scale_plots({"history": history})] == ["scale-history"]


def test_loop_stalls_are_counted_by_the_threads_at_work_in_them() -> None:
    stalls = _load("_loop_stalls")

    def stall(t: float, ms: float, readers: int, loop_cpu: float) -> dict[str, Any]:
        sched = {f"s3stream-read_{i}": [0.5, 4.0] for i in range(readers)}
        sched["s3stream-read_7"] = [0.2, 0.3]  # idle: under a millisecond at work
        return {
            "t": t,
            "ms": ms,
            "loop": "MainThread",
            "cpu_ms": {"MainThread": loop_cpu},
            "sched_ms": {"MainThread": [loop_cpu, 1.0], **sched},
        }

    lines = [
        stall(1.0, 30.0, 7, 2.0),  # the replay's loads
        stall(2.0, 12.0, 4, 9.0),  # too few read-ahead threads to be theirs
        stall(3.0, 6.0, 8, 1.0),  # too short
        stall(9.0, 50.0, 8, 1.0),  # outside the window
    ]
    assert stalls.counted(lines, 0.5, 5.0) == {
        "stalls": 2,
        "read_ahead": 1,
        "longest_ms": 30.0,
        "loop_cpu_max_ms": 9.0,
    }


def test_a_watched_server_writes_its_event_loops_stalls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parts, stalls = _load("_scale_parts"), _load("_loop_stalls")
    # Every beat later than a tenth of a millisecond counts: a server at
    # rest writes stalls too.
    monkeypatch.setenv("TIDELOG_LOOP_WATCH_LATE_MS", "0.1")
    prefix = str(tmp_path / "stalls")
    with parts.Server(tmp_path, tmp_path / "data", watch_loop=prefix) as server:
        deadline = time.monotonic() + 30
        while not stalls.read(prefix, server.process.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        written = stalls.read(prefix, server.process.pid)
    assert written, "the watched server wrote no stall"
    first = written[0]
    assert first["loop"] == "MainThread" and first["ms"] > 0
    assert "MainThread" in first["sched_ms"] and first["samples"]


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("background_nice", 20),
        ("read_nice", -1),
        ("replay_rest_ratio", float("nan")),
        ("read_ahead_beside_live", -1),
    ],
)
def test_a_burst_setting_the_servers_refuse_is_refused_before_the_run(
    setting: str, value: float
) -> None:
    scale = _load("scale_bench")
    with pytest.raises(ConfigOutOfRange, match=setting):
        scale.burst_store(dataclasses.replace(scale.QUICK, **{setting: value}))


def test_the_burst_servers_get_only_the_settings_a_run_sets() -> None:
    scale = _load("scale_bench")
    assert scale.burst_store(scale.QUICK) is None
    chosen = dataclasses.replace(scale.QUICK, background_nice=0, read_nice=19)
    assert scale.burst_store(chosen) == {"read_nice": 19, "background_nice": 0}


def test_the_command_refuses_an_out_of_range_burst_setting_before_it_runs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    scale = _load("scale_bench")

    def ran(*args: Any) -> None:
        raise AssertionError("the run started")

    monkeypatch.setattr(scale, "run", ran)
    monkeypatch.setattr("sys.argv", ["scale_bench.py", "--quick", "--background-nice", "20"])
    with pytest.raises(SystemExit) as exited:
        scale.main()
    assert exited.value.code == 2
    assert "background_nice" in capsys.readouterr().err
