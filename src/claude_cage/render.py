"""Output: human text on stdout, versioned JSON for scripts, notes and errors on stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

JSON_VERSION = 1


def print_json(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps({"version": JSON_VERSION, **payload}, indent=2) + "\n")


def note(message: str) -> None:
    sys.stderr.write(message + "\n")


def warn(message: str) -> None:
    sys.stderr.write(f"warning: {message}\n")


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """A plain aligned table (no Rich import: `list` is on the hot path)."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines)


def checks_table(checks: list[dict[str, Any]]) -> str:
    rows = [("PASS" if c["ok"] else "FAIL", c["check"], c["detail"]) for c in checks]
    return table(rows, ("", "check", "detail"))
