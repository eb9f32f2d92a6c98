"""The project directory rule and --workdir resolution."""

import pytest

from claude_cage import workdir
from claude_cage.errors import BadInput


def test_project_is_the_clone_then_the_first_mount_then_workspace() -> None:
    assert workdir.project_dir({"repo_name": "repo", "mounts": ["/a:/workspace/a:rw"]}) == (
        "/workspace/repo"
    )
    mounts = ["/x:y/b:/workspace/b:rw", "/a:/workspace/a:ro"]
    assert workdir.project_dir({"mounts": mounts}) == "/workspace/b"
    assert workdir.project_dir({"mounts": []}) == "/workspace"
    assert workdir.project_dir(None) == "/workspace"


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        (None, "/workspace/p"),
        ("", "/workspace/p"),
        ("src", "/workspace/p/src"),
        ("src/../lib/", "/workspace/p/lib"),
        (".", "/workspace/p"),
        ("/workspace/p/docs", "/workspace/p/docs"),
    ],
)
def test_workdir_inside_the_project(requested: str | None, expected: str) -> None:
    assert workdir.resolve("/workspace/p", requested) == expected


@pytest.mark.parametrize("requested", ["..", "../q", "/etc", "/workspace/pq", "a/../../x"])
def test_workdir_outside_the_project_is_refused(requested: str) -> None:
    with pytest.raises(BadInput, match="outside the project"):
        workdir.resolve("/workspace/p", requested)
