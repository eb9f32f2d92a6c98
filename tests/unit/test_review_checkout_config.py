"""merge and apply refuse a change to what a checkout reads to decide what runs: a
`.gitattributes` (filters), or an `.lfsconfig`, whose URL the user's git-lfs would ask
from the host, outside the session's sandbox, with whatever the session put in it."""

from __future__ import annotations

import pytest

from claude_cage.errors import BadInput
from claude_cage.operations.review import _no_attributes


@pytest.mark.parametrize(
    "path", [".gitattributes", "sub/.gitattributes", ".lfsconfig", "a/.LfsConfig", ".GITATTRIBUTES"]
)
def test_a_change_to_checkout_config_is_refused(path: str) -> None:
    with pytest.raises(BadInput, match="refusing to merge") as refused:
        _no_attributes("web", ["a.txt", path], "merge")
    assert path in refused.value.message and "claude-cage diff web" in (refused.value.hint or "")


def test_other_files_pass() -> None:
    _no_attributes("web", ["a.txt", "gitattributes", ".lfsconfig.txt", "docs/.gitignore"], "apply")
