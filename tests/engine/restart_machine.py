"""A stateful model's engine that restarts: opened on a directory of its
own with a manual clock, restarted at rules a model draws and once more
when a run ends, each time checking that what the restarted engine serves
is what the engine before it served."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis.stateful import RuleBasedStateMachine

import engine
from engine.clock import ManualClock


class RestartMachine(RuleBasedStateMachine):
    """``open_engine`` opens the engine on a directory, ``served`` is what
    two engines' answers compare by."""

    directory_prefix = "restart-"

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix=self.directory_prefix))
        self.clock = ManualClock()
        self.engine = self.open_engine(self.directory / "node", self.clock)

    def open_engine(self, directory: Path, clock: ManualClock) -> engine.Engine:
        raise NotImplementedError

    def served(self, opened: engine.Engine) -> Any:
        raise NotImplementedError

    def compared(self, served: Any, loaded: Any) -> tuple[Any, Any]:
        """What of ``served`` and ``loaded`` must be equal: all of it unless
        a model says what a restart may change."""
        return served, loaded

    def teardown(self) -> None:
        try:
            self._check_restart()
        finally:
            self.engine.close()
            shutil.rmtree(self.directory, ignore_errors=True)

    def _check_restart(self) -> None:
        served = self.served(self.engine)
        self.engine.close()
        self.engine = self.open_engine(self.directory / "node", self.clock)
        served, loaded = self.compared(served, self.served(self.engine))
        assert loaded == served, f"served {served}\nloaded {loaded}"
