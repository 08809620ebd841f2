"""For bench/gil_waits.py, loaded through PYTHONPATH into the server it
starts (``tidelog serve`` only): sets the GIL switch interval from
``TIDELOG_BENCH_SWITCH_INTERVAL`` (seconds) when given, and while
``TIDELOG_GIL_PROBE`` names the probe's output prefix, writes every half
second which Python thread each kernel thread id is, to
``<prefix>.names.<pid>`` (JSON), for the probe's records to be named."""

from __future__ import annotations

import json
import os
import sys
import threading
import time

_INTERVAL = os.environ.get("TIDELOG_BENCH_SWITCH_INTERVAL")
_PROBE = os.environ.get("TIDELOG_GIL_PROBE")


def _write_names(path: str) -> None:
    names: dict[int, str] = {}
    while True:
        for thread in threading.enumerate():
            if thread.native_id is not None:
                names[thread.native_id] = thread.name
        with open(f"{path}.tmp", "w", encoding="utf-8") as out:
            json.dump(names, out)
        os.replace(f"{path}.tmp", path)
        time.sleep(0.5)


if "serve" in sys.argv:
    if _INTERVAL:
        sys.setswitchinterval(float(_INTERVAL))
    if _PROBE:
        threading.Thread(
            target=_write_names,
            args=(f"{_PROBE}.names.{os.getpid()}",),
            name="gil-probe-names",
            daemon=True,
        ).start()
