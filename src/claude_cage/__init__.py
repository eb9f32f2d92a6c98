"""claude-cage: run Claude Code in hardened Docker sessions."""

__version__ = "0.1.0"
