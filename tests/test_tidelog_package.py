"""``import tidelog`` is the engine's public API under the distribution's
name, object for object, plus tidelog.testing; importing it (or the pytest
plugin) does not import the engine's modules until a name is used."""

from __future__ import annotations

import inspect
import subprocess
import sys

import engine
import engine.testing
import tidelog
import tidelog.testing


def test_tidelog_names_the_engines_own_objects() -> None:
    assert sorted(tidelog.__all__) == sorted([*engine.__all__, "testing"])
    for name in engine.__all__:
        assert getattr(tidelog, name) is getattr(engine, name), name
    for name in engine.testing.__all__:
        assert getattr(tidelog.testing, name) is getattr(engine.testing, name), name
    # the functions, not modules of the same name
    for name in ("broker", "async_broker", "start"):
        assert inspect.isfunction(getattr(engine.testing, name)), name


def test_an_unknown_name_is_an_attribute_error() -> None:
    for module in (engine, tidelog, engine.testing, tidelog.testing):
        assert not hasattr(module, "no_such_name")


def imported_after(statement: str) -> set[str]:
    """The modules a fresh interpreter has loaded after ``statement``."""
    probe = f"import sys; {statement}; print('\\n'.join(sys.modules))"
    found = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return set(found.stdout.split())


def test_importing_the_package_or_the_pytest_plugin_imports_no_engine_part() -> None:
    heavy = {"engine.engine", "engine.server.server", "botocore", "jsonschema", "fastavro"}
    for statement in ("import tidelog", "import engine.testing.pytest_plugin"):
        assert imported_after(statement) & heavy == set(), statement
    assert {"engine.engine", "engine.server.server"} <= imported_after(
        "import engine.testing; engine.testing.start().close()"
    )
