"""The embedded event log: every operation's events, in SQLite, mirrored to MongoDB.

`events.py` is the log itself (`EventLog`); `schema.py` its table and migrations,
`db.py` opening and repairing the database, `outbox.py` the MongoDB mirror and its
detached flusher (`python -m claude_cage.eventlog`), `spool.py` the fallback file for a
locked database, `folds.py` and `prune.py` the bounds, `redaction.py` what never leaves.
"""
