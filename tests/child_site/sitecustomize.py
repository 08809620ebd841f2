"""Run at the start of every Python process the suite starts (tests/conftest.py
puts this directory first on their PYTHONPATH): unless the child runs pytest
itself, it sees no hypothesis, as an installed tidelog does not.

hypothesis is a test dependency, and kio imports it whenever it can, to
register strategies for its types; that cost every ``python -m engine serve``,
child engine and CLI run of the suite about 0.2 s of CPU at start. Marking it
missing in ``sys.modules`` makes kio's ``import hypothesis`` fail as it does
where hypothesis is not installed. The children the suite starts use no
hypothesis of their own but a pytest run (tests/test_native_twin.py), whose
conftest needs it.
"""

import sys

if sys.orig_argv[1:3] != ["-m", "pytest"]:
    sys.modules.setdefault("hypothesis", None)  # type: ignore[arg-type]
