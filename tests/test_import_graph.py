"""engine/'s import graph: no cycles but the asyncio server/connection pair,
and no lower layer importing a higher one.

Layers, lowest first: the wire protocol (engine.protocol); the broker core
(engine's top-level modules: partitions, catalog, config, errors, types,
per-partition transaction data); the coordinators (engine.groups,
engine.transactions) and the embedded clients (engine.client, which reach
the core through engine.client.host's Protocol, never through Engine, and
engine.memory's readers, which read through them, and engine.tables' writer
but its settings, which topic configs name); the engine facade
(engine.engine) and the typed agent records that write through it
(engine.memory.agent, .transport, .wire); the wire server (engine.server)
and, beside it, what reaches other clusters through Kafka clients
(engine.mirror, but for the offset-sync format it shares with the core);
the command line, the test broker (engine.testing) and the package's
re-exports. Imports under TYPE_CHECKING count: a cycle of types is still a
cycle of knowledge. s3stream/ has no cycle at all.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ALLOWED_CYCLES = [{"engine.server.connection", "engine.server.server"}]


def _modules(package: str) -> dict[str, Path]:
    modules = {}
    for path in (ROOT / package).rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _owner(name: str, modules: dict[str, Path]) -> str:
    """The module a dotted name lives in (``engine.x.Y`` -> ``engine.x``)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name


def import_graph(top: str = "engine") -> dict[str, set[str]]:
    """module -> the modules of package ``top`` it imports (anywhere in
    its body); each caller gets a copy of its own."""
    return {module: set(imports) for module, imports in _parsed_graph(top).items()}


@functools.cache
def _parsed_graph(top: str) -> dict[str, set[str]]:
    """The graph from the package's sources, parsed once a run: the tests
    ask for the same graph, and each parse reads some 300 modules."""
    modules = _modules(top)
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {_owner(a.name, modules) for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    imported.add(full if full in modules else _owner(base, modules))
        graph[module] = {m for m in imported if m.startswith(top)} - {module, top}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for successor in graph.get(node, ()):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layer(module: str) -> int:
    if module.startswith("engine.protocol"):
        return 0
    if module.startswith(("engine.memory.agent", "engine.memory.transport", "engine.memory.wire")):
        return 3  # typed agent records write through the engine's clients, as a user does
    if module != "engine.memory" and module.startswith(
        ("engine.groups", "engine.transactions", "engine.client", "engine.memory")
    ):
        return 2  # engine.memory reads through the clients (bounded replay)
    if module.startswith("engine.tables.") and module != "engine.tables.settings":
        return 2  # the table writer reads settled records as the clients decode them
    if module == "engine.engine":
        return 3
    if module.startswith("engine.server"):
        return 4
    if module.startswith("engine.mirror.") and module != "engine.mirror.offset_sync":
        return 4  # the mirror reaches other clusters through Kafka clients, beside the server
    if module.startswith(("engine.cli", "engine.testing")) or module in {
        "engine",
        "engine.__main__",
        "engine.memory",
    }:
        return 5
    return 1  # the broker core


def test_layers_are_what_the_test_thinks() -> None:
    assert layer("engine.partition") == 1
    assert layer("engine.markers") == 1
    assert layer("engine.client.consumer") == 2
    assert layer("engine.server.server") == 4
    assert (layer("engine.mirror.offset_sync"), layer("engine.mirror.verify")) == (1, 4)
    assert {"engine.client.host", "engine.cli.main", "engine.engine"} <= set(import_graph())


def test_engine_has_no_import_cycle_but_the_server_and_its_connections() -> None:
    assert cycles(import_graph()) == ALLOWED_CYCLES


def test_s3stream_has_no_import_cycle() -> None:
    """The manifest's state, its read-side queries (its base) and the
    entries both name: none imports another that imports it back."""
    graph = import_graph("s3stream")
    assert "s3stream.manifest_queries" in graph
    assert cycles(graph) == []


def test_no_module_imports_a_higher_layer() -> None:
    upward = {
        (module, imported)
        for module, imports in import_graph().items()
        for imported in imports
        if layer(imported) > layer(module)
    }
    assert upward == set()


def test_clients_reach_the_engine_only_through_their_host_protocol() -> None:
    graph = import_graph()
    for module, imports in graph.items():
        if module.startswith("engine.client"):
            assert "engine.engine" not in imports, module
    assert "engine.engine" not in graph["engine.client.host"]


ENGINE_PARTS = {
    "engine.topic_admin",
    "engine.acks",
    "engine.data_waiters",
    "engine.maintenance",
    "engine.exit_close",
}
"""The parts Engine wires; engine.topics and engine.store_errors are shared."""


def test_only_the_engine_facade_wires_its_parts() -> None:
    graph = import_graph()
    assert set(graph) >= ENGINE_PARTS
    for module, imports in graph.items():
        if module not in ENGINE_PARTS | {"engine.engine"}:
            assert not imports & ENGINE_PARTS, module


def test_the_parts_of_the_consumer_never_import_the_consumer() -> None:
    graph = import_graph()
    parts = {
        "engine.client.poll_steps",
        "engine.client.offset_commits",
        "engine.client.fetched_records",
    }
    assert parts <= set(graph)
    for part in parts:
        assert "engine.client.consumer" not in graph[part], part


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [{"a", "b", "c"}]
