"""The command line's entry point, run in this process with the Context a test gives
it: the same parsing, error mapping and exit codes as the console script (cli.main),
without a Python start-up or a Docker engine per case."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from claude_cage.cli import main
from claude_cage.context import Context
from tests.conftest import Result


def run_main(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    ctx: Context,
    *args: str,
    input: str | None = None,
) -> Result:
    """`claude-cage ARGS` through main(), its commands given `ctx`."""
    capsys.readouterr()
    with monkeypatch.context() as patch:
        patch.setattr(sys, "argv", ["claude-cage", *args])
        if input is not None:
            patch.setattr(sys, "stdin", io.StringIO(input))
        try:
            main(ctx)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return Result(code, out, err)


def tree(directory: Path) -> dict[str, bytes | None]:
    """Every path under `directory` with its content (None for a directory)."""
    if not directory.exists():
        return {}
    return {
        str(path.relative_to(directory)): None if path.is_dir() else path.read_bytes()
        for path in sorted(directory.rglob("*"))
    }
