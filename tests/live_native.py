"""Which tests marked ``c_extension`` reach the live native/ (the
implementation TIDELOG_PURE chooses), read from their source.

A test of the C extension itself is left out of the pure pass
(tests/native_twin.py): only right when it runs the same there, naming the
C module and the twin, never the live ``native``. A test reaches the live
native/ by a name bound to it or to one of our modules' functions that
calls it (``from native import crc32c``, wal.format's ``crc32c``), by
dotted access through a package (``native.crc32c`` after ``import
native``; ``native._cnative.crc32c`` is the C by name), through a
module-level helper that does, or through a fixture that does: one of its
module, or of a conftest.py above it, asked for as a parameter, by
``usefixtures`` or as autouse. It is marked by ``needs_c`` (under any name
it is imported as, or through its module), ``pytest.mark.c_extension``, a
name bound to either, or a ``pytestmark`` that holds one, on the module
or on its class.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROJECT_PACKAGES = ("engine", "s3stream", "wal", "tests", "native")
"""Our own packages, whose functions a test may call: one of them that
calls the live native/ (wal.format's crc32c, say) is as live as ``native``."""

C_MARKS = ("needs_c", "c_extension")
"""The names that mark a test of the C extension: tests/native/conftest.py's
decorator, and the mark it sets."""

_LIVE_IN_MODULE: dict[str, frozenset[str]] = {}
_LIVE_FIXTURES: dict[Path, frozenset[str]] = {}


def _source_of(module: str) -> Path | None:
    path = ROOT / Path(*module.split("."))
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return None


def is_module(module: str) -> bool:
    """Whether ``module`` names one of our modules or packages (native's C
    module among them, which has no source here)."""
    return module == "native._cnative" or _source_of(module) is not None


def live_in_module(module: str) -> frozenset[str]:
    """The top-level names of our module ``module`` that reach the live
    native/ (empty for a module that cannot be found)."""
    if module not in _LIVE_IN_MODULE:
        _LIVE_IN_MODULE[module] = frozenset()  # an import cycle reads it empty
        source = _source_of(module)
        if source is not None:
            scope = Scope(_parsed(source.read_text(), str(source)))
            _LIVE_IN_MODULE[module] = frozenset(scope.live)
    return _LIVE_IN_MODULE[module]


@functools.cache
def _parsed(source: str, filename: str) -> ast.Module:
    """The tree of ``source``, parsed once a session: a conftest.py is read
    for every module below it. Keyed by the text, so a file written again
    is parsed again."""
    return ast.parse(source, filename)


_C_MARK_WORD = re.compile(rf"\b(?:{'|'.join(C_MARKS)})\b")


def _may_mark_c(source: str) -> bool:
    """Whether ``source`` can mark a test of the C extension at all: every
    way Scope.marks_c knows of spells ``needs_c`` or ``c_extension`` as a
    word (a decorator, an attribute, an import under another name, an
    assignment from one of those), so a module naming neither has no test
    to find and needs neither its tree nor its conftest.py files."""
    return _C_MARK_WORD.search(source) is not None


def _attribute_is_live(module: str, name: str) -> bool:
    """Whether ``module.name`` (``name`` not a module) reaches the live
    native/: any name of the package ``native`` but its C module; none of
    native's own modules (``_pure``, ``_cnative``, ``records``, ...), the
    same on either implementation; a live name of one of our modules."""
    if module == "native":
        return name != "_cnative"
    if module.startswith("native."):
        return False
    return name in live_in_module(module)


def _chain(node: ast.expr) -> list[str] | None:
    """``a.b.c`` as ``["a", "b", "c"]``; None when it is rooted in no name."""
    names: list[str] = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    names.append(node.id)
    return names[::-1]


class Scope:
    """A module's names: which reach the live native/, which are bound to
    our modules, which mark a test of the C extension, and its fixtures."""

    def __init__(self, tree: ast.Module, fixtures_above: frozenset[str] = frozenset()) -> None:
        """``fixtures_above``: the live fixtures of the conftest.py files
        above, which a fixture of this module may ask for."""
        self.modules: dict[str, str] = {}
        """A name bound to one of our modules, and the module."""
        self.live: set[str] = set()
        self.c_marks: set[str] = {"needs_c"}
        self.fixtures: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}
        for node in ast.walk(tree):  # an import inside a test binds the same name
            if isinstance(node, ast.Import):
                self._bind_imports(node)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                self._bind_from(node.module, node.names)
        helpers: dict[str, ast.AST] = {}
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                helpers[node.name] = node
                if not isinstance(node, ast.ClassDef) and any(
                    map(_is_fixture, node.decorator_list)
                ):
                    self.fixtures[node.name] = node
            elif isinstance(node, ast.Assign):
                named = {t.id for t in node.targets if isinstance(t, ast.Name)}
                helpers |= dict.fromkeys(named, node)
                if self.marks_c(node.value):
                    self.c_marks |= named
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                helpers[node.target.id] = node
        grew = True
        while grew:  # a helper that uses a live name is live too, a fixture asking a live one
            grew = False
            for name, node in helpers.items():
                if name in self.live:
                    continue
                asked = self.fixtures_asked(node) if name in self.fixtures else set()
                # a fixture of the same name above is the one a fixture asking
                # for its own name gets (pytest's override)
                if self.uses_live(node) or asked & (self.live | fixtures_above):
                    self.live.add(name)
                    grew = True

    def _bind_imports(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name.split(".")[0] not in PROJECT_PACKAGES:
                continue
            if alias.asname is not None:
                self.modules[alias.asname] = alias.name
            else:  # ``import a.b`` binds ``a``
                self.modules[alias.name.split(".")[0]] = alias.name.split(".")[0]

    def _bind_from(self, module: str, names: list[ast.alias]) -> None:
        if module.split(".", maxsplit=1)[0] not in PROJECT_PACKAGES:
            return
        for alias in names:
            bound = alias.asname or alias.name
            if is_module(f"{module}.{alias.name}"):
                self.modules[bound] = f"{module}.{alias.name}"
            elif _attribute_is_live(module, alias.name):
                self.live.add(bound)
            if alias.name in C_MARKS:
                self.c_marks.add(bound)

    def uses_live(self, node: ast.AST) -> bool:
        """Whether ``node`` names anything that reaches the live native/."""
        if isinstance(node, ast.Attribute | ast.Name):
            chain = _chain(node)
            if chain is not None and chain[0] in self.modules:
                return self._chain_is_live(self.modules[chain[0]], chain[1:])
            if isinstance(node, ast.Name):
                return node.id in self.live
        return any(self.uses_live(child) for child in ast.iter_child_nodes(node))

    @staticmethod
    def _chain_is_live(module: str, attributes: list[str]) -> bool:
        for attribute in attributes:
            if not is_module(f"{module}.{attribute}"):
                return _attribute_is_live(module, attribute)
            module = f"{module}.{attribute}"
        return module == "native"  # the live package itself, passed on whole

    def marks_c(self, node: ast.AST) -> bool:
        """Whether ``node`` (a decorator, a ``pytestmark``) marks the C
        extension's tests: a call of a mark, a list of marks, ``needs_c`` or
        ``c_extension`` by any name or through a module."""
        if isinstance(node, ast.Call):
            return self.marks_c(node.func)
        if isinstance(node, ast.List | ast.Tuple):
            return any(self.marks_c(element) for element in node.elts)
        if isinstance(node, ast.Attribute):
            return node.attr in C_MARKS
        return isinstance(node, ast.Name) and node.id in self.c_marks

    def fixtures_asked(self, node: ast.AST) -> set[str]:
        """The fixtures a test or a fixture asks for: its parameters and
        its ``usefixtures``."""
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            return set()
        arguments = node.args
        asked = {a.arg for a in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs)}
        for decorator in node.decorator_list:
            if (
                isinstance(decorator, ast.Call)
                and isinstance(decorator.func, ast.Attribute)
                and decorator.func.attr == "usefixtures"
            ):
                asked |= {
                    a.value
                    for a in decorator.args
                    if isinstance(a, ast.Constant) and isinstance(a.value, str)
                }
        return asked


def _is_fixture(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    chain = _chain(target)
    return chain is not None and chain[-1] == "fixture"


def _autouse(fixture: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any(
        isinstance(d, ast.Call)
        and any(
            k.arg == "autouse" and isinstance(k.value, ast.Constant) and k.value.value is True
            for k in d.keywords
        )
        for d in fixture.decorator_list
        if _is_fixture(d)
    )


def _pytestmark(body: list[ast.stmt]) -> list[ast.expr]:
    return [
        node.value
        for node in body
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets)
    ]


def _tests(
    tree: ast.Module, scope: Scope
) -> Iterator[tuple[ast.FunctionDef | ast.AsyncFunctionDef, bool]]:
    """Each test of the module, and whether a mark it inherits (its
    module's or its class's) marks it a test of the C extension."""
    module_marked = any(map(scope.marks_c, _pytestmark(tree.body)))
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith(
            "test"
        ):
            yield node, module_marked
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            class_marked = module_marked or any(
                map(scope.marks_c, [*node.decorator_list, *_pytestmark(node.body)])
            )
            for method in node.body:
                if isinstance(method, ast.FunctionDef | ast.AsyncFunctionDef) and (
                    method.name.startswith("test")
                ):
                    yield method, class_marked


def live_fixtures_above(
    module: Path, top: Path = ROOT / "tests"
) -> tuple[frozenset[str], frozenset[str]]:
    """The fixtures of the conftest.py files above ``module`` up to ``top``
    that reach the live native/, also through a fixture of a farther
    conftest.py they ask for, and those of them that are autouse (a nearer
    conftest's fixture stands in for a farther one's of the same name)."""
    conftests = []
    directory = module.parent
    while directory == top or top in directory.parents:
        if (directory / "conftest.py").is_file():
            conftests.append(directory / "conftest.py")
        directory = directory.parent
    live: set[str] = set()
    autouse: set[str] = set()
    for conftest in reversed(conftests):  # the farthest first, overridden by nearer ones
        defined, live_here, autouse_here = _conftest_fixtures(
            conftest.read_text(), str(conftest), frozenset(live)
        )
        live = (live - defined) | live_here
        autouse = (autouse - defined) | autouse_here
    return frozenset(live), frozenset(autouse)


@functools.cache
def _conftest_fixtures(
    source: str, filename: str, live_above: frozenset[str]
) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """A conftest.py's fixtures, those of them that reach the live native/
    (``live_above``: the live fixtures of the conftest.py files above it)
    and those of these that are autouse; once a session for each text."""
    scope = Scope(_parsed(source, filename), live_above)
    live = {name for name in scope.fixtures if name in scope.live}
    autouse = {name for name in live if _autouse(scope.fixtures[name])}
    return frozenset(scope.fixtures), frozenset(live), frozenset(autouse)


def c_tests_reaching_the_live_native(
    source: str,
    fixtures_above: frozenset[str] = frozenset(),
    autouse_above: frozenset[str] = frozenset(),
) -> list[str]:
    """The tests of ``source`` marked as the C extension's own that reach
    the live native/; ``fixtures_above``: the live fixtures of the
    conftest.py files above it (``autouse_above`` those used by every test)."""
    if not _may_mark_c(source):
        return []
    tree = _parsed(source, "<module>")
    scope = Scope(tree, fixtures_above)
    own_autouse = {name for name, f in scope.fixtures.items() if _autouse(f) and name in scope.live}
    inherited = fixtures_above - set(scope.fixtures)
    found = []
    for test, inherits_c_mark in _tests(tree, scope):
        if not (inherits_c_mark or any(map(scope.marks_c, test.decorator_list))):
            continue
        asked = scope.fixtures_asked(test)
        if (
            scope.uses_live(test)
            or asked & (scope.live | inherited)
            or own_autouse
            or (autouse_above - set(scope.fixtures))
        ):
            found.append(test.name)
    return found


def misplaced_c_tests(module: str) -> list[str]:
    """The tests of ``module`` (a path under the root) marked as the C
    extension's own that reach the live native/."""
    path = ROOT / module
    source = path.read_text()
    if not _may_mark_c(source):
        return []
    fixtures, autouse = live_fixtures_above(path)
    return c_tests_reaching_the_live_native(source, fixtures, autouse)
