"""`python -m claude_cage.dashboard --port N`: the detached dashboard `ui --detach`
starts (its token comes in CAGE_UI_TOKEN, never on the command line)."""

from __future__ import annotations

import sys

from claude_cage.dashboard.server import run_detached

if __name__ == "__main__":
    run_detached(sys.argv[1:])
