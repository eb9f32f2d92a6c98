"""The detached flusher's entry point: `python -m claude_cage.eventlog sync DB ...`."""

import sys

from claude_cage.eventlog import outbox
from claude_cage.eventlog.events import EventLog

sys.exit(outbox.main(sys.argv[1:], EventLog))
