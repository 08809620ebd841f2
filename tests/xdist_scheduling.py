"""How the suite's tests are shared among pytest-xdist workers (tests/run.sh
runs ``pytest -n 3 --dist loadfile``).

As with xdist's own ``loadfile``, a work unit is a whole test module: a
module-scoped fixture (a served broker, a moto server) starts once, and a
module's tests run in their written order in one process, never beside one
another. Tests that must not overlap (those that bind 127.0.0.1:9092) are
kept in one module for that reason.

What this adds is the order: the modules known to run longest go first, so
that neither worker is left with a long module while the other idles at the
end; the rest go in order of their number of tests, most first, as xdist
orders them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sized

from xdist.scheduler import LoadFileScheduling
from xdist.workermanage import WorkerController

# The longest modules of a C pass (pytest --durations=150: every module whose
# listed tests took 20 s or more), longest first. Most are modules of one to
# five tests, which the order by number of tests would hand out last, where
# one a minute long keeps a worker busy while the other idles. A module missing
# here only starts later; a name left here after its module is gone changes
# nothing. Each module of the fourth pass's list was run alone
# (docs/testing.md, "The suite's time, fourth pass"): the callgrind count
# took 13 s on a quiet machine, no longer the longest, and goes last;
# tests/schemas/test_compatibility.py, its Avro strategies built once, left.
# tests/bench/test_remote_ack_bench.py left with the fifth pass: the bench
# at 80 appends, one run fewer. tests/server/test_schema_registry.py left
# with the sixth pass: 9.5 s alone on a quiet machine, its consumer groups
# of one member no longer waiting 3 s for more. tests/engine/test_crash.py
# joined with the ninth: 51 to 92 s alone, at loads of 3 to 19.
# tests/bench/test_kafka_bench.py moved down with the tenth: one run of the
# bench where there were two, 0.7 of its time before.
# tests/mirror/test_group_offsets_restarts.py moved down with the eleventh: its
# 30 restarts no longer wait on the server's imports (about 18 s of its 49 s
# on a quiet machine), which puts it beside tests/engine/test_crash.py.
# tests/engine/test_txn_model.py left with the twelfth: its engines in memory
# (tests/ram_dir.py), 5 s alone at a load of 13, where it took 33.
# tests/engine/test_checkpoint_parts.py moved down with the thirteenth: its
# restarts in memory, 0.38 of its time before (docs/testing.md).
# Remade with the fourteenth and fifteenth passes from a C pass's
# --durations=0 on a loaded machine (load 12-16, its figures some 2.5 times
# a quiet run's: every module of 38 s or more there), each module the two
# passes cut placed by its new share: tests/server/test_protocol.py 0.47,
# tests/native/test_asan_fuzz.py 0.62, tests/engine/test_exit.py 0.70.
# tests/server/test_protocol.py is the longest module by far and the one
# with most tests, so the order by number of tests put it first already.
LONGEST_FIRST = (
    "tests/server/test_protocol.py",
    "tests/server/test_transactions_confluent.py",
    "tests/server/test_serve_cli.py",
    "tests/server/test_limits.py",
    "tests/mirror/test_group_offsets_restarts.py",
    "tests/engine/test_close_resumed.py",
    "tests/native/test_asan_fuzz.py",
    "tests/server/test_schema_registry.py",
    "tests/server/test_kafka_python.py",
    "tests/engine/test_crash.py",
    "tests/server/test_groups_confluent.py",
    "tests/engine/test_assignors_client.py",
    "tests/server/test_serve_refusals.py",
    "tests/server/test_client_quotas.py",
    "tests/server/test_answer_bounds.py",
    "tests/tables/test_partitions.py",
    "tests/server/test_confluent.py",
    "tests/server/test_kafkajs.py",
    "tests/s3stream/test_stream_store.py",
    "tests/tables/test_manifest_merge.py",
    "tests/bench/test_topics_bench.py",
    "tests/bench/test_kafka_bench.py",
    "tests/engine/test_checkpoint_parts.py",
    "tests/server/test_secrets.py",
    "tests/mirror/test_crash.py",
    "tests/engine/test_topic_scale.py",
    "tests/engine/test_cli.py",
    "tests/server/test_groups_migration.py",
    "tests/server/test_oauthbearer.py",
    "tests/faults/test_kill_campaign.py",
    "tests/engine/test_exit.py",
)


def in_running_order(units: Mapping[str, Sized]) -> list[str]:
    """The modules (each with its tests) in the order workers take them:
    those in LONGEST_FIRST in its order, then the rest by number of tests,
    most first, ties in the order given."""

    def rank(unit: str) -> tuple[int, int]:
        known = LONGEST_FIRST.index(unit) if unit in LONGEST_FIRST else len(LONGEST_FIRST)
        return known, -len(units[unit])

    return sorted(units, key=rank)


class ModuleScheduling(LoadFileScheduling):
    """xdist's ``loadfile``, the longest modules first."""

    _ordered = False

    def _assign_work_unit(self, node: WorkerController) -> None:
        # The first call comes once schedule() has queued every module and
        # before any is handed out: the one moment to put them in order.
        if not self._ordered:
            queued = dict(self.workqueue)
            self.workqueue.clear()
            self.workqueue.update((unit, queued[unit]) for unit in in_running_order(queued))
            self._ordered = True
        super()._assign_work_unit(node)
