"""What removing a clone-mode session would lose: its work that is not in the host's
branch cage/NAME.

The session (or, when it is stopped, a throwaway container with its sandbox) computes
the commit `fetch` would bring, with the export's own script (`clone.WORK_TIP`): HEAD,
plus one commit for uncommitted changes made with a fixed identity and date, so the
same work always makes the same commit. The work is fetched when that commit is the
host branch's tip or one of its ancestors. Otherwise the session counts its commits
since the base that the branch does not hold, and names the newest few.

What the session answers is untrusted: the host reads at most `ANSWER_CAP` bytes of it
for at most `TIME_LIMIT` seconds, and reads ids only after checking their form. When
the answer does not come, the work counts as not fetched (`Unknown`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from claude_cage import hostgit, names, workdir
from claude_cage.engine.api import EngineAPI
from claude_cage.errors import CageError
from claude_cage.operations import answer
from claude_cage.operations.clone import WORK_TIP, reader, work_env
from claude_cage.record import SessionRecord

if TYPE_CHECKING:
    from claude_cage.context import Context

ANSWER_CAP = 1 << 20  # bytes, stdout and stderr together; the answer is a few lines
TIME_LIMIT = 120  # seconds: `git add -A` hashes what changed, as `fetch` does
LISTED = 5  # commits named in the message
SHA = re.compile(r"^[0-9a-f]{40}$")

# After WORK_TIP: $4 is the session's starting point, then the host's branch tip and its
# parents. Prints the tip, HEAD, whether the session holds only what it started with,
# the number of its commits since the base and its start (a fork's start holds its
# source's work) that the host's branch lacks, and the newest.
CHECK = (
    WORK_TIP
    + r"""
start=$4
shift 4
fresh=no
if [ "$head" = "$base" ] && [ "$(git rev-parse "$tip^{tree}")" = \
     "$(git rev-parse -q --verify "$start^{tree}" 2>/dev/null || echo none)" ]; then
    fresh=yes
fi
known="$base $start $*"
set -- "$head" --not
for id in $known; do
    if git cat-file -e "$id^{commit}" 2>/dev/null; then set -- "$@" "$id"; fi
done
printf '%s\n%s\n%s\n' "$tip" "$head" "$fresh"
git rev-list --count "$@"
git -c log.showSignature=false log --no-decorate --format='%h %s' -n "$LISTED" "$@"
"""
)


@dataclass(frozen=True)
class Unfetched:
    """A clone's work that is not in the host's branch (nothing when empty)."""

    branch: str
    commits: int = 0  # the session's commits the branch lacks
    newest: list[str] = field(default_factory=list)  # "<id> <subject>" of a few of them
    uncommitted: bool = False  # changes in the session no fetch captured

    def __bool__(self) -> bool:
        return self.commits > 0 or self.uncommitted

    def describe(self) -> str:
        parts = []
        if self.commits:
            plural = "commit" if self.commits == 1 else "commits"
            listed = "; ".join(self.newest)
            more = ", ..." if self.commits > len(self.newest) else ""
            parts.append(f"{self.commits} {plural} not fetched ({listed}{more})")
        if self.uncommitted:
            parts.append("uncommitted changes in the session")
        return ", ".join(parts)


class Unknown(CageError):
    """The session's work could not be checked: it counts as not fetched."""


def is_clone(meta: SessionRecord | None) -> bool:
    return meta is not None and bool(meta.repo_name and meta.base)


def find(ctx: Context, engine: EngineAPI, name: str, meta: SessionRecord) -> Unfetched | None:
    """The session's work the host's branch lacks; None when the clone is gone (its
    volume removed: nothing is left to lose). Raises Unknown when it cannot tell."""
    assert meta.repo_name and meta.base
    if engine.volume_labels(names.workspace_volume(name)) is None:
        return None
    branch = meta.branch or f"cage/{name}"
    repo = Path(meta.repo or "")
    held = _branch_tip(repo, branch)
    known = [held, *_parents(repo, held)] if held else []
    target = workdir.clone_target(meta.repo_name)
    args = [target, meta.base, name, meta.start or meta.base, *known]
    try:
        with reader(ctx, engine, name, meta) as container:
            command = [*work_env(meta), f"LISTED={LISTED}", "/bin/sh", "-c", CHECK, "check", *args]
            out = _ask(engine, container, command)
    except CageError as exc:  # Unknown too: the message names the session
        raise Unknown(f"cannot check session {name}'s work: {exc.message}") from None
    lines = out.decode(errors="replace").split("\n")
    if len(lines) < 4 or not (SHA.match(lines[0]) and SHA.match(lines[1])):
        raise Unknown(f"cannot check session {name}'s work: its answer is not understood")
    tip, head, fresh, count = lines[0], lines[1], lines[2] == "yes", lines[3]
    # Fresh: nothing but what it started with (a fork's start is its source's work, made
    # by the same script: the same work gives the same commit).
    if fresh or tip == meta.start or (held and _contains(repo, held, tip)):
        return Unfetched(branch)
    newest = [_printable(line) for line in lines[4 : 4 + LISTED] if line]
    commits = int(count) if count.isdigit() else len(newest)
    return Unfetched(branch, commits, newest, uncommitted=tip != head)


def _ask(engine: EngineAPI, container: str, cmd: list[str]) -> bytes:
    """Run cmd in the container; its stdout, read within ANSWER_CAP and TIME_LIMIT."""
    try:
        code, out, err = answer.ask(engine, container, cmd, cap=ANSWER_CAP, limit=TIME_LIMIT,
                                    env={"LISTED": str(LISTED)})  # fmt: skip
    except answer.NoAnswer as exc:
        raise Unknown(exc.message) from None
    if code != 0:
        said = _printable(err.decode(errors="replace").strip()[-200:])
        raise Unknown(f"git in the session failed (exit {code}): {said}")
    return out


def _branch_tip(repo: Path, branch: str) -> str | None:
    if not (repo / ".git").exists():
        return None  # the repository is gone: nothing is in it
    found = hostgit.git(repo, "rev-parse", "-q", "--verify", f"refs/heads/{branch}^{{commit}}",
                          check=False)  # fmt: skip
    tip = found.stdout.decode().strip()
    return tip if found.returncode == 0 and SHA.match(tip) else None


def _parents(repo: Path, commit: str) -> list[str]:
    """The parents of the branch's tip: when the tip is a fetched 'uncommitted work'
    commit (never in the session), its parent is the session commit it was made on."""
    found = hostgit.git(repo, "rev-parse", f"{commit}^@", check=False).stdout.decode()
    return [p for p in found.split() if SHA.match(p)]


def _contains(repo: Path, branch_tip: str, commit: str) -> bool:
    if commit == branch_tip:
        return True
    run = hostgit.git(repo, "merge-base", "--is-ancestor", commit, branch_tip, check=False)
    return run.returncode == 0  # 1: not an ancestor; 128: not even in the repository


def _printable(text: str) -> str:
    """A subject from the session, safe for the operator's terminal."""
    return "".join(c if c.isprintable() else "?" for c in text)[:72]
