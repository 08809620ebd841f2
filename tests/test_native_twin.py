"""The pure-Python pass's selection (tests/native_twin.py) leaves out no test
whose outcome depends on native/, and names nothing that is not there."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from native import _pure
from tests.native.conftest import C_IMPL
from tests.native_twin import ONE_PASS_ONLY, PURE_PASS, given_the_c_extension, in_pure_pass

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"


def _test_modules() -> list[str]:
    return sorted(
        path.relative_to(ROOT).as_posix()
        for path in TESTS.rglob("test_*.py")
        if "node_modules" not in path.parts
    )


def _imports_native(module: str) -> bool:
    tree = ast.parse((ROOT / module).read_text(), module)
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
        if _imports_native(module)
        and not _module_in_pure_pass(module)
        and module not in ONE_PASS_ONLY
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


def _names_the_live_native(module: str) -> list[str]:
    """The tests marked ``needs_c`` in ``module`` that reach the live native/."""
    return _needs_c_tests_reaching_the_live_native((ROOT / module).read_text())


def _needs_c_tests_reaching_the_live_native(source: str) -> list[str]:
    tree = ast.parse(source)
    live = _live_names(tree)
    return [
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and any(ast.unparse(d) == "needs_c" for d in node.decorator_list)
        and _names(node) & live
    ]


# Our own packages, whose functions a test may call: one of them that calls
# the live native/ (wal.format's crc32c, say) is as live as ``native`` itself.
_PROJECT_PACKAGES = ("engine", "s3stream", "wal", "tests")
_LIVE_IN_MODULE: dict[str, frozenset[str]] = {}


def _live_in_module(name: str) -> frozenset[str]:
    """The top-level names of the project module ``name`` that reach the
    live native/ (empty for a module that cannot be found)."""
    if name not in _LIVE_IN_MODULE:
        _LIVE_IN_MODULE[name] = frozenset()  # an import cycle reads it empty
        path = ROOT / Path(*name.split("."))
        source = (
            path.with_suffix(".py") if path.with_suffix(".py").is_file() else path / "__init__.py"
        )
        if source.is_file():
            _LIVE_IN_MODULE[name] = frozenset(_live_names(ast.parse(source.read_text(), name)))
    return _LIVE_IN_MODULE[name]


def _live_names(tree: ast.Module) -> set[str]:
    """The names in a module that reach the live native/: the bare
    ``native`` name or a function imported from it, anywhere in the module
    (an import inside a test binds the same name), a name imported from one
    of our modules where it is live, and a module-level function, class or
    value that uses any of them. native/'s own modules (``_pure``,
    ``_cnative``, ``compression``, ``records``, ...) are the same on either
    implementation."""
    live: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            live |= {alias.asname or alias.name for alias in node.names if alias.name == "native"}
        elif isinstance(node, ast.ImportFrom) and node.module == "native":
            live |= {
                alias.asname or alias.name
                for alias in node.names
                if not (ROOT / "native" / alias.name).with_suffix(".py").exists()
                and alias.name != "_cnative"
            }
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and node.module is not None
            and node.module.split(".")[0] in _PROJECT_PACKAGES
        ):
            reached = _live_in_module(node.module)
            live |= {alias.asname or alias.name for alias in node.names if alias.name in reached}
    helpers: dict[str, ast.AST] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            helpers[node.name] = node
        elif isinstance(node, ast.Assign):
            helpers |= {t.id: node for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            helpers[node.target.id] = node
    grew = True
    while grew:  # a helper that uses a live name is live too
        grew = False
        for name, node in helpers.items():
            if name not in live and _names(node) & live:
                live.add(name)
                grew = True
    return live


def _names(node: ast.AST) -> set[str]:
    return {name.id for name in ast.walk(node) if isinstance(name, ast.Name)}


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
    assert _needs_c_tests_reaching_the_live_native(source) == ["test_x"]


def test_a_needs_c_test_of_the_c_and_the_twin_by_name_is_not_flagged() -> None:
    source = (
        "from native import _cnative, _pure\nfrom wal.format import encode_record_address\n\n"
        "@needs_c\ndef test_x() -> None:\n"
        "    assert _cnative.crc32c(encode_record_address(1, 2, 3)) == "
        "_pure.crc32c(encode_record_address(1, 2, 3))\n"
    )
    assert _needs_c_tests_reaching_the_live_native(source) == []


@pytest.mark.parametrize("module", [m for m in _test_modules() if m.startswith("tests/native/")])
def test_a_test_left_out_as_one_of_the_c_extension_never_reaches_the_live_native(
    module: str,
) -> None:
    """needs_c keeps a test out of the pure pass: only right when the test
    runs the same there, naming the C extension and the twin, never the
    implementation TIDELOG_PURE chooses."""
    assert _names_the_live_native(module) == []


def test_the_pure_pass_leaves_out_the_tests_of_the_c_extension_itself() -> None:
    cases = [
        case.partition("::")[2] for case in _pure_pass_cases("tests/native/test_record_walk.py")
    ]
    assert "test_a_batch_is_accepted_exactly_when_its_records_decode" in cases, cases
    assert any(case.startswith("test_a_header_key_must_be_utf8[python") for case in cases)
    assert not any(case.startswith("test_c_and_python_agree_on") for case in cases), cases
