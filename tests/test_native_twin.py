"""The pure-Python pass's selection (tests/native_twin.py) leaves out no test
whose outcome depends on native/, and names nothing that is not there."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from native import _pure
from tests.live_native import (
    c_tests_reaching_the_live_native,
    live_fixtures_above,
    misplaced_c_tests,
)
from tests.native.conftest import C_IMPL
from tests.native_twin import ONE_PASS_ONLY, PURE_PASS, given_the_c_extension, in_pure_pass

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
_NATIVE_WORD = re.compile(r"\bnative\b")


def _test_modules() -> list[str]:
    return sorted(
        path.relative_to(ROOT).as_posix()
        for path in TESTS.rglob("test_*.py")
        if "node_modules" not in path.parts
    )


def _imports_native(module: str) -> bool:
    source = (ROOT / module).read_text()
    if _NATIVE_WORD.search(source) is None:
        return False  # every import of native spells it as a word: no tree to read
    tree = ast.parse(source, module)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(
            alias.name.split(".")[0] == "native" for alias in node.names
        ):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "native":
            return True
    return False


def _module_in_pure_pass(module: str) -> bool:
    """Whether any test of the module runs in the pure pass."""
    return in_pure_pass(f"{module}::any_test") or any(
        entry.startswith(module + "::") for entry in PURE_PASS
    )


@pytest.mark.parametrize("entry", PURE_PASS)
def test_every_entry_names_a_directory_a_module_or_a_test_that_exists(entry: str) -> None:
    path, _, test = entry.partition("::")
    assert (ROOT / path).exists(), f"{path} is in PURE_PASS but does not exist"
    if entry.endswith("/"):
        assert (ROOT / path).is_dir()
    if test:
        defined = {
            node.name
            for node in ast.parse((ROOT / path).read_text()).body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        }
        assert test in defined, f"{path} has no test {test}"


@pytest.mark.parametrize("module", sorted(ONE_PASS_ONLY))
def test_every_exemption_names_a_module_that_exists_and_is_not_selected(module: str) -> None:
    assert (ROOT / module).is_file(), f"{module} is in ONE_PASS_ONLY but does not exist"
    assert not _module_in_pure_pass(module), f"{module} is both selected and exempted"


def test_every_module_under_native_wal_and_s3stream_runs_in_the_pure_pass() -> None:
    dependent = [
        module
        for module in _test_modules()
        if module.startswith(("tests/native/", "tests/wal/", "tests/s3stream/"))
    ]
    assert dependent, "no test modules found under tests/native, tests/wal, tests/s3stream"
    left_out = [module for module in dependent if not _module_in_pure_pass(module)]
    assert left_out == []


def test_a_module_importing_native_runs_in_the_pure_pass_or_says_why_not() -> None:
    undecided = [
        module
        for module in _test_modules()
        if module not in ONE_PASS_ONLY
        and not _module_in_pure_pass(module)
        and _imports_native(module)  # the costly check last, for the modules left
    ]
    assert undecided == [], (
        "these modules import native/: add them to PURE_PASS or, with a reason, "
        "to ONE_PASS_ONLY in tests/native_twin.py"
    )


@pytest.mark.parametrize(
    ("nodeid", "selected"),
    [
        ("tests/native/test_crc32c.py::test_x", True),
        ("tests/native_other/test_x.py::test_x", False),
        ("tests/engine/test_model.py::test_engine_matches_model", True),
        ("tests/engine/test_model.py.bak::test_x", False),
        ("tests/server/test_kcat.py::test_produce_and_consume_with_each_codec[gzip]", True),
        ("tests/server/test_kcat.py::test_produce_and_consume_with_each_codec_again", False),
        ("tests/server/test_kcat.py::test_consume_json_envelope", False),
        ("tests/server/test_groups_confluent.py::test_x", False),
    ],
)
def test_entries_select_a_directory_a_module_or_one_test(nodeid: str, selected: bool) -> None:
    assert in_pure_pass(nodeid) is selected


def test_the_mark_is_on_exactly_the_selected_tests(request: pytest.FixtureRequest) -> None:
    marked = request.node.get_closest_marker("native_twin") is not None
    assert marked is in_pure_pass(request.node.nodeid)
    assert marked is False  # this module runs once, in the C pass


def test_a_case_given_the_c_extension_runs_once_and_the_pure_case_twice() -> None:
    assert not given_the_c_extension({"impl": _pure, "codec": 1})
    assert not given_the_c_extension({})
    if C_IMPL is not None:
        assert given_the_c_extension({"impl": C_IMPL})


def _pure_pass_cases(module: str) -> list[str]:
    """The node ids of ``module`` the pure pass runs, as it collects them."""
    listed = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"),
            *("-m", "native_twin and not slow", module),
        ],
        cwd=ROOT,
        env=os.environ | {"TIDELOG_PURE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.splitlines()
    return [line for line in listed if "::" in line]


def test_the_pure_pass_selects_the_pure_case_and_not_the_c_case() -> None:
    cases = _pure_pass_cases("tests/native/test_golden.py")
    assert any(case.endswith("[python]") for case in cases), cases
    assert not any("[c]" in case or "[c-" in case or "-c]" in case for case in cases), cases


def test_the_pure_pass_runs_its_properties_at_the_c_passs_profile(tmp_path: Path) -> None:
    """tests/run.sh's two pytest runs, with pytest replaced by one that
    tells the profile it was handed: the twin meets ci's 500 examples a
    property in the pure pass (the C pass's differential properties hold
    several of its functions to the C at 100 to 300), so the pure pass must
    not run fewer than the C pass does."""
    script = (ROOT / "tests/run.sh").read_text()
    passes = script[script.index('echo "== pytest (native: C)"') :]
    profiles = tmp_path / "profiles"
    runner = "\n".join(
        [
            "set -euo pipefail",
            'pytest() { echo "$TIDELOG_HYPOTHESIS" >> "$PROFILES"; }',
            "workers=()",
            passes,
        ]
    )
    for given in ("ci", "thorough"):
        profiles.write_text("")
        subprocess.run(
            ["bash", "-c", runner],
            env=os.environ | {"TIDELOG_HYPOTHESIS": given, "PROFILES": str(profiles)},
            capture_output=True,
            timeout=60,
            check=True,
        )
        assert profiles.read_text().split() == [given, given]


@pytest.mark.parametrize(
    "source",
    [
        # imported inside the test, as test_crc32c imports _cnative
        "@needs_c\ndef test_x() -> None:\n    from native import decode_records\n"
        "    decode_records(b'')\n",
        "@needs_c\ndef test_x() -> None:\n    import native\n    native.crc32c(b'')\n",
        # through one of our modules that calls the live native/
        "from wal.format import encode_segment_header\n\n"
        "@needs_c\ndef test_x() -> None:\n    encode_segment_header(1)\n",
        # through a module-level class or annotated value
        "import native\n\nclass Helper:\n    check = staticmethod(native.crc32c)\n\n"
        "@needs_c\ndef test_x() -> None:\n    Helper.check(b'')\n",
        "import native\n\nCHECK: object = native.crc32c\n\n"
        "@needs_c\ndef test_x() -> None:\n    print(CHECK)\n",
    ],
)
def test_a_needs_c_test_reaching_the_live_native_is_found(source: str) -> None:
    assert c_tests_reaching_the_live_native(source) == ["test_x"]


@pytest.mark.parametrize(
    "source",
    [
        # a fixture of the module asked for, its name never used in the body
        "import native\nimport pytest\n\n@pytest.fixture\ndef crc() -> object:\n"
        "    return native.crc32c\n\n@needs_c\ndef test_x(crc: object) -> None:\n    pass\n",
        # a fixture asking for another that reaches it
        "import pytest\nfrom native import crc32c\n\n@pytest.fixture\ndef inner() -> object:\n"
        "    return crc32c\n\n@pytest.fixture\ndef outer(inner: object) -> None:\n    pass\n\n"
        "@needs_c\ndef test_x(outer: None) -> None:\n    pass\n",
        # by usefixtures, or autouse
        "import native\nimport pytest\n\n@pytest.fixture\ndef live() -> None:\n"
        "    native.crc32c(b'')\n\n@needs_c\n@pytest.mark.usefixtures('live')\n"
        "def test_x() -> None:\n    pass\n",
        "import native\nimport pytest\n\n@pytest.fixture(autouse=True)\ndef live() -> None:\n"
        "    native.crc32c(b'')\n\n@needs_c\ndef test_x() -> None:\n    pass\n",
        # dotted access through a package
        "import wal.format\n\n@needs_c\ndef test_x() -> None:\n"
        "    wal.format.encode_segment_header(1)\n",
        "import wal.format as wal_format\n\n@needs_c\ndef test_x() -> None:\n"
        "    wal_format.encode_segment_header(1)\n",
        "from wal import format\n\n@needs_c\ndef test_x() -> None:\n"
        "    format.encode_segment_header(1)\n",
        # marked otherwise than by a decorator spelled needs_c
        "import native\nimport pytest\n\n@pytest.mark.c_extension\ndef test_x() -> None:\n"
        "    native.crc32c(b'')\n",
        "import native\nfrom tests.native.conftest import needs_c as c_only\n\n@c_only\n"
        "def test_x() -> None:\n    native.crc32c(b'')\n",
        "import native\nfrom tests.native import conftest\n\n@conftest.needs_c\n"
        "def test_x() -> None:\n    native.crc32c(b'')\n",
        "import native\nimport pytest\n\nc_only = pytest.mark.c_extension\n\n@c_only\n"
        "def test_x() -> None:\n    native.crc32c(b'')\n",
        "import native\nimport pytest\n\npytestmark = [pytest.mark.c_extension]\n\n"
        "def test_x() -> None:\n    native.crc32c(b'')\n",
        "import native\n\n@needs_c\nclass TestC:\n    def test_x(self) -> None:\n"
        "        native.crc32c(b'')\n",
    ],
)
def test_a_c_extension_test_reaching_the_live_native_otherwise_is_found(source: str) -> None:
    found = c_tests_reaching_the_live_native(source)
    assert found == ["test_x"]


def test_a_fixture_of_a_conftest_above_reaching_the_live_native_is_followed(
    tmp_path: Path,
) -> None:
    (tmp_path / "conftest.py").write_text(
        "import native\nimport pytest\n\n@pytest.fixture\ndef live() -> object:\n"
        "    return native.crc32c\n\n@pytest.fixture(autouse=True)\ndef everywhere() -> None:\n"
        "    native.crc32c(b'')\n\n@pytest.fixture\ndef twin() -> object:\n"
        "    from native import _pure\n    return _pure.crc32c\n"
    )
    (tmp_path / "inner").mkdir()
    (tmp_path / "inner" / "conftest.py").write_text(
        "import pytest\n\n@pytest.fixture\ndef everywhere() -> None:\n    pass\n"
    )
    module = tmp_path / "inner" / "test_x.py"
    # the inner conftest's everywhere, which reaches nothing, stands in for the outer's
    assert live_fixtures_above(module, tmp_path) == (frozenset({"live"}), frozenset())
    assert live_fixtures_above(tmp_path / "test_x.py", tmp_path) == (
        frozenset({"live", "everywhere"}),
        frozenset({"everywhere"}),
    )
    source = "@needs_c\ndef test_x(live: object) -> None:\n    pass\n\n"
    source += "@needs_c\ndef test_y(twin: object) -> None:\n    pass\n"
    fixtures, autouse = live_fixtures_above(module, tmp_path)
    assert c_tests_reaching_the_live_native(source, fixtures, autouse) == ["test_x"]
    fixtures, autouse = live_fixtures_above(tmp_path / "test_x.py", tmp_path)
    assert c_tests_reaching_the_live_native(source, fixtures, autouse) == ["test_x", "test_y"]


def test_a_fixture_asking_for_a_live_fixture_of_a_conftest_above_is_followed(
    tmp_path: Path,
) -> None:
    """A fixture of the module, or of a nearer conftest.py, asking for a
    farther conftest's fixture that reaches the live native/ was passed
    over: only a chain of fixtures inside one file was followed."""
    (tmp_path / "conftest.py").write_text(
        "import native\nimport pytest\n\n@pytest.fixture\ndef live() -> object:\n"
        "    return native.crc32c\n"
    )
    (tmp_path / "inner").mkdir()
    (tmp_path / "inner" / "conftest.py").write_text(
        "import pytest\n\n@pytest.fixture\ndef nearer(live: object) -> object:\n    return live\n"
    )
    fixtures, autouse = live_fixtures_above(tmp_path / "inner" / "test_x.py", tmp_path)
    assert fixtures == frozenset({"live", "nearer"})
    source = (
        "import pytest\n\n@pytest.fixture\ndef outer(live: object) -> object:\n"
        "    return live\n\n@needs_c\ndef test_x(outer: object) -> None:\n    pass\n\n"
        "@needs_c\ndef test_y(nearer: object) -> None:\n    pass\n"
    )
    assert c_tests_reaching_the_live_native(source, fixtures, autouse) == ["test_x", "test_y"]


def test_a_needs_c_test_of_the_c_through_the_package_by_name_is_not_flagged() -> None:
    """``native._cnative`` after ``import native`` names the C module, not
    the live native/ ``native.crc32c`` would be."""
    source = (
        "import native\nimport native._pure\n\n@needs_c\ndef test_x() -> None:\n"
        "    assert native._cnative.crc32c(b'') == native._pure.crc32c(b'')\n"
    )
    assert c_tests_reaching_the_live_native(source) == []


def test_a_needs_c_test_of_the_c_and_the_twin_by_name_is_not_flagged() -> None:
    source = (
        "from native import _cnative, _pure\nfrom wal.format import encode_record_address\n\n"
        "@needs_c\ndef test_x() -> None:\n"
        "    assert _cnative.crc32c(encode_record_address(1, 2, 3)) == "
        "_pure.crc32c(encode_record_address(1, 2, 3))\n"
    )
    assert c_tests_reaching_the_live_native(source) == []


@pytest.mark.parametrize("module", _test_modules())
def test_a_test_left_out_as_one_of_the_c_extension_never_reaches_the_live_native(
    module: str,
) -> None:
    """needs_c (the c_extension mark) keeps a test out of the pure pass:
    only right when the test runs the same there, naming the C extension
    and the twin, never the implementation TIDELOG_PURE chooses. Every
    module of tests/, since the mark may be set anywhere."""
    assert misplaced_c_tests(module) == []


def test_the_pure_pass_leaves_out_the_tests_of_the_c_extension_itself() -> None:
    cases = [
        case.partition("::")[2] for case in _pure_pass_cases("tests/native/test_record_walk.py")
    ]
    assert "test_a_batch_is_accepted_exactly_when_its_records_decode" in cases, cases
    assert any(case.startswith("test_a_header_key_must_be_utf8[python") for case in cases)
    assert not any(case.startswith("test_c_and_python_agree_on") for case in cases), cases
