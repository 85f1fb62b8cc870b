"""Hot reload: a running sensor picks up added, changed and removed rules without restarting.

:class:`RuleWatcher` watches the rule folders (and an optional placeholders file) by polling
file modification times and sizes -- no inotify dependency, works on any filesystem -- and
reloads when something changed or when :meth:`RuleWatcher.request` was called (the SIGHUP
handler installed by :meth:`RuleWatcher.install_sighup` only sets that flag; signal handlers
must not do real work). A reload builds a new :class:`~analyzer.sigma.RuleSet` and hands it to
:meth:`Engine.reload`, which keeps the state of unchanged correlation rules.

The sensor calls :meth:`RuleWatcher.poll` from its event loop (cheap when nothing changed:
one ``stat`` per rule file, at most every ``interval`` seconds), or :meth:`RuleWatcher.start`
runs the polling in a daemon thread; :meth:`Engine.reload` swaps the rules in one assignment,
so ``match`` in the sensor thread never sees a half-built rule set.

A rule file with an error during an edit drops that file's rules until it is fixed; every
reload reports its :class:`~analyzer.sigma.RuleError` list through ``on_reload``.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from analyzer.sigma.engine import Engine
from analyzer.sigma.loader import RuleSet, load_placeholders

__all__ = ["ReloadResult", "RuleWatcher"]

ReloadResult = dict[str, Any]
Snapshot = dict[str, tuple[int, int]]


class RuleWatcher:
    def __init__(self, engine: Engine, paths: Sequence[Path | str],
                 placeholders: Mapping[str, Sequence[str]] | Path | str | None = None,
                 on_reload: Callable[[RuleSet, ReloadResult], None] | None = None,
                 interval: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.engine = engine
        self.paths = [Path(p) for p in paths]
        self._placeholders_file = Path(placeholders) if isinstance(placeholders, str | Path) else None
        self._placeholders = dict(placeholders) if isinstance(placeholders, Mapping) else {}
        self.on_reload = on_reload
        self.interval = interval
        self.clock = clock
        self._requested = False
        self._next_check = float("-inf")
        self._snapshot = self.snapshot()
        self.reloads = 0
        self.last_error: str | None = None

    def snapshot(self) -> Snapshot:
        """(mtime_ns, size) of every rule file, plus the placeholders file."""
        files: list[Path] = []
        for path in self.paths:
            if path.is_dir():
                files.extend(p for p in path.rglob("*") if p.suffix in (".yml", ".yaml"))
            elif path.exists():
                files.append(path)
        if self._placeholders_file is not None:
            files.append(self._placeholders_file)
        snap: Snapshot = {}
        for f in files:
            try:
                st = f.stat()
            except OSError:
                continue
            snap[str(f)] = (st.st_mtime_ns, st.st_size)
        return snap

    def request(self) -> None:
        """Ask for a reload at the next :meth:`poll` (safe to call from a signal handler)."""
        self._requested = True

    def install_sighup(self) -> None:
        """Reload on SIGHUP (call from the main thread)."""
        signal.signal(signal.SIGHUP, lambda _signum, _frame: self.request())

    def poll(self, force: bool = False) -> ReloadResult | None:
        """Reload if the rule files changed or a reload was requested; None when nothing to do."""
        now = self.clock()
        if not (force or self._requested) and now < self._next_check:
            return None
        self._next_check = now + self.interval
        snap = self.snapshot()
        if not (force or self._requested) and snap == self._snapshot:
            return None
        self._requested = False
        self._snapshot = snap
        return self.reload()

    def reload(self) -> ReloadResult:
        placeholders: Mapping[str, Sequence[str]] = self._placeholders
        if self._placeholders_file is not None:
            try:
                placeholders = load_placeholders(self._placeholders_file)
            except (OSError, ValueError) as exc:
                self.last_error = f"{self._placeholders_file}: {exc}"
                placeholders = self.engine.ruleset.placeholders
        ruleset = RuleSet.load(self.paths, placeholders)
        result = self.engine.reload(ruleset)
        self.reloads += 1
        if self.on_reload is not None:
            self.on_reload(ruleset, result)
        return result

    def run(self, stop: threading.Event) -> None:
        """Poll until ``stop`` is set."""
        while not stop.wait(self.interval):
            self.poll()

    def start(self) -> tuple[threading.Thread, threading.Event]:
        """Poll in a daemon thread; set the returned event to stop it."""
        stop = threading.Event()
        thread = threading.Thread(target=self.run, args=(stop,), name="icsmon-rule-watcher", daemon=True)
        thread.start()
        return thread, stop
