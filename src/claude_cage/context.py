"""One command's collaborators: the data directory, the session store, the
configuration, the event log, the engines, the environment and the clock.

The CLI builds one `Context` per command and hands it to the operation it calls; the
operations take `ctx` first and never build a store, an engine or a configuration
themselves (tests/unit/test_imports.py reads them with `ast` to keep it so). Tests
build one with fakes: `Context(engine=FakeEngine(...), clock=lambda: 1000.0)`.

Everything heavy is made on first use: `list` never loads the configuration unless it
asks several engines, and `--help` imports none of it.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from claude_cage import metadata, paths
from claude_cage.errors import CageError, SessionNotFound

if TYPE_CHECKING:
    from claude_cage.config import Config
    from claude_cage.engine.api import EngineAPI
    from claude_cage.eventlog.events import EventLog

CALL_SETTING = "engine_call_timeout"


class Context:
    """What one command works with, each part made once, when first asked for."""

    def __init__(
        self,
        *,
        environ: Mapping[str, str] | None = None,
        config: Config | None = None,
        engine: EngineAPI | None = None,
        events: EventLog | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # The environment is read once: a copy, so what a command changes later (a
        # child's variables) is never taken for the user's.
        self.environ: Mapping[str, str] = dict(os.environ if environ is None else environ)
        self.clock = clock
        self._config = config
        self._engine = engine  # tests: this one engine answers for every endpoint
        self._events = events
        self._engines: dict[tuple[str, str, float | None], EngineAPI] = {}
        self.data_dir = paths.data_dir()
        self.store = metadata.SessionStore(paths.sessions_dir())

    @property
    def config(self) -> Config:
        """The configuration (defaults, files, CAGE_* from this environment), loaded on
        first use; a broken file raises here, as `config.load` does."""
        if self._config is None:
            from claude_cage import config  # start-up: PyYAML, 10-20 ms, for those that read it

            self._config = config.load(environ=self.environ)
        return self._config

    def config_with(self, config_file: str | None) -> Config:
        """A configuration of its own for a command that checks flags against it (or
        reads an extra `--config` file): the command's one stays as it was."""
        if config_file is None:
            cfg = self.config
            return dataclasses.replace(
                cfg, values=dict(cfg.values), sources=dict(cfg.sources), problems=list(cfg.problems)
            )
        from claude_cage import config  # start-up: PyYAML, as above

        return config.load(config_file, self.environ)

    @property
    def events(self) -> EventLog:
        """The event log, opened on first use (sqlite3 costs ~15 ms)."""
        if self._events is None:
            # start-up: sqlite3 and the validators, for the commands that record
            from claude_cage.eventlog import events
            from claude_cage.validators import parse_size

            try:  # mirrored to MongoDB when `mongodb_uri` (or MONGODB_URI) is set
                cfg = self.config
                uri, database = cfg["mongodb_uri"], cfg["mongodb_db"]
                limits = events.Limits(parse_size(cfg["events_max_size"]), cfg["events_max_age"])
            except CageError:  # a broken config file must not stop the log
                uri, database, limits = None, "claude_cage", events.Limits()
            self._events = events.EventLog(str(paths.events_db()), uri, database, limits=limits)
        return self._events

    def engine_named(
        self, name: str | None, timeout: float | None = None, setting: str = CALL_SETTING
    ) -> EngineAPI:
        """An engine by name ("", "local", a context or a URL), one per endpoint and
        deadline for the whole command."""
        if self._engine is not None:
            return self._engine
        from claude_cage.engine import fleet  # start-up: `--help` and `config` need no engine

        key = (fleet.canonical(name), setting, timeout)
        if key not in self._engines:
            self._engines[key] = fleet.engine_named(
                name,
                timeout,
                setting,
                unenforced_limits=lambda: bool(self.config["rootless_without_limits"]),
            )
        return self._engines[key]

    def local_engine(self) -> EngineAPI:
        return self.engine_named("")

    def engine_for(self, session: str) -> EngineAPI:
        """The engine a session lives on: the one its record names; the local one when
        it records none, or has no usable record (an orphan found on the local engine)."""
        try:
            session.encode()
        except UnicodeEncodeError:  # argument bytes that are not UTF-8: no session's name
            raise SessionNotFound(session) from None
        if self._engine is not None:
            return self._engine
        try:
            found = self.store.load(session)
        except CageError:
            found = None
        return self.engine_named(found.engine if found is not None else "")

    def check_engine(self, session: str, engine: EngineAPI) -> None:
        """Call with the session's lock held, `engine` chosen before it was taken: refuse
        (exit 1) when the record now names another engine (a start there recorded the
        session meanwhile), so that no command makes a second copy of the session on
        `engine`, or reports it destroyed, while the first one runs on, unrecorded."""
        if self._engine is not None:
            return
        from claude_cage.engine import fleet  # start-up: as in engine_named

        try:
            found = self.store.load(session)
        except CageError:
            return  # a damaged record: the command reads it, and says so, itself
        if found is not None and fleet.canonical(found.engine) != engine.endpoint.name:
            raise CageError(
                f"session {session} was recorded on engine {found.engine or fleet.LOCAL} "
                f"while this command waited for it on {engine.endpoint.label}",
                "run the command again: it goes to the session's engine",
            )

    def now(self) -> float:
        """Seconds since the epoch, from this context's clock."""
        return self.clock()
