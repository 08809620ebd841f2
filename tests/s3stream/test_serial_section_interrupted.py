"""The manifest's serial section, entered on the main thread (a compaction
run there: Compactor.run_once is public) and interrupted by a Ctrl-C just as
it takes its lock, is left free (docs/design/0097)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from engine.clock import monotonic
from s3stream.errors import Fenced
from s3stream.manifest import Manifest
from s3stream.manifest_writer import ManifestWriter, SerialSection
from s3stream.store import LocalStore
from tests.engine.interrupted import interrupted_taking, interrupted_twice, taken_elsewhere


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[ManifestWriter]:
    manifest = Manifest.open(LocalStore(tmp_path / "objects"))
    fenced: list[Fenced] = []
    yield ManifestWriter(manifest, fenced.append)
    assert not fenced


def entered(writer: ManifestWriter) -> None:
    with writer.serial:
        pass


def entered_until(writer: ManifestWriter) -> None:
    with writer.serial.until(monotonic() + 60):  # the timed acquire
        pass


@pytest.mark.parametrize("enter", [entered, entered_until])
def test_a_ctrl_c_as_the_section_takes_its_lock_leaves_it_free(
    writer: ManifestWriter, enter: Callable[[ManifestWriter], None]
) -> None:
    """Held, every later commit (each upload's, each compaction's, each
    topic's creation) would wait on it for good, or until its deadline."""
    lock = writer.serial._lock
    assert interrupted_taking(lock, SerialSection._take.__code__, lambda: enter(writer))
    assert taken_elsewhere(lock)
    entered(writer)  # and this thread takes it again


@pytest.mark.parametrize("enter", [entered, entered_until])
def test_the_section_refuses_its_own_holder_and_stays_held(
    writer: ManifestWriter, enter: Callable[[ManifestWriter], None]
) -> None:
    with writer.serial:
        with pytest.raises(RuntimeError):
            enter(writer)
        assert writer.serial._lock._is_owned()  # still the holder's
    assert taken_elsewhere(writer.serial._lock)


@pytest.mark.parametrize("until", [False, True])
def test_a_second_ctrl_c_as_the_section_is_released_leaves_it_free(
    writer: ManifestWriter, until: bool
) -> None:
    """A first Ctrl-C inside the section, a second as its release starts
    (wal/interrupts.py): the release runs whole, then the interrupt is
    raised."""
    section = writer.serial.until(monotonic() + 60) if until else writer.serial
    interrupted = interrupted_twice(section)
    assert taken_elsewhere(writer.serial._lock)
    assert interrupted.landed[0].endswith("__exit__")
    entered(writer)
