"""Command lines run without Click: `attach NAME`, the one whose wait is felt most,
`logs NAME`, and `list` (or `list --json`), asked for most often.

Click and its command tree are about a fifth of `attach`'s CPU before the session's
screen shows (bench/README.md). `attach NAME`, exactly that, is recognized here and
runs the code the Click command runs (cli/running.py `attach`, cli/terminal.py): the
same checks, messages and exit codes. Any other command line (`attach` with an option,
without a NAME, with `--help`) goes to Click, as does a shell's completion request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

COMPLETION = "_CLAUDE_CAGE_COMPLETE"  # Click's variable for shell completion


def attach_name(args: Sequence[str], environ: Mapping[str, str]) -> str | None:
    """NAME when `args` are `attach NAME` and nothing else; None: Click reads them."""
    return _name_alone("attach", args, environ)


def logs_name(args: Sequence[str], environ: Mapping[str, str]) -> str | None:
    """NAME when `args` are `logs NAME` and nothing else (cli/logview.py shows it as
    the Click command does); None: Click reads them."""
    return _name_alone("logs", args, environ)


def list_json(args: Sequence[str], environ: Mapping[str, str]) -> bool | None:
    """Whether to print JSON when `args` are `list` or `list --json` and nothing else
    (cli/listing.py shows them as the Click command does); None: Click reads them."""
    if COMPLETION in environ or list(args) not in (["list"], ["list", "--json"]):
        return None
    return len(args) == 2


def _name_alone(command: str, args: Sequence[str], environ: Mapping[str, str]) -> str | None:
    if COMPLETION in environ or len(args) != 2 or args[0] != command:
        return None
    name = args[1]
    return name if name and not name.startswith("-") else None
