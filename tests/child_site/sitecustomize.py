"""Run at the start of every Python process the suite starts (tests/conftest.py
puts this directory first on their PYTHONPATH): unless the child runs tests
itself, it sees no hypothesis, as an installed tidelog does not.

hypothesis is a test dependency, and kio imports it whenever it can, to
register strategies for its types; that cost every ``python -m engine serve``,
child engine and CLI run of the suite about 0.2 s of CPU at start. Marking it
missing in ``sys.modules`` makes kio's ``import hypothesis`` fail as it does
where hypothesis is not installed. Three kinds of children import test
modules, which need hypothesis, and keep it: a pytest run
(tests/test_native_twin.py; pytester's in tests/engine/testing/), a
pytest-xdist worker (started by execnet with its bootstrap line) and a
process started by multiprocessing, which imports the module of the
function it runs (tests/s3stream/test_object_store.py).
"""

import sys

_EXECNET_BOOTSTRAP = "import sys;exec(eval(sys.stdin.readline()))"

_RUNS_TESTS = (
    (
        sys.orig_argv[1:3] == ["-m", "pytest"]
        or sys.orig_argv[1:2] == ["-mpytest"]  # pytester's runpytest_subprocess
        or sys.orig_argv[-2:] == ["-c", _EXECNET_BOOTSTRAP]  # a pytest-xdist worker
    )
    or any(argument.startswith("from multiprocessing.") for argument in sys.orig_argv)
)
if not _RUNS_TESTS:
    sys.modules.setdefault("hypothesis", None)  # type: ignore[arg-type]
