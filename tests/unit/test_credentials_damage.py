"""A damaged credential file is named, as every other damaged file is: `secret list`
shows it as damaged (and warns with its path), `secret rm` removes it, `secret set`
of its name replaces it, and whatever would hand credentials to a session (a start,
a refresh) refuses, naming it, rather than run without the credential."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from claude_cage import paths
from claude_cage.cli import cli
from claude_cage.context import Context
from claude_cage.credentials import Secret
from claude_cage.operations import secret_store

GOOD = Secret("github", "github", ("github.com",), "ghp_" + "a" * 36)
DAMAGES = {
    "garbage": lambda p: p.write_bytes(b"\xff\x00not json"),
    "empty": lambda p: p.write_bytes(b""),
    "not-a-credential": lambda p: p.write_text("{}"),
    "a-list": lambda p: p.write_text("[1, 2]"),
    "no-hosts": lambda p: p.write_text(
        json.dumps({"name": "no-hosts", "kind": "bearer", "hosts": [], "value": "x"})
    ),
    "unknown-kind": lambda p: p.write_text(
        json.dumps(
            {"name": "unknown-kind", "kind": "magic", "hosts": ["a.example.com"], "value": "x"}
        )
    ),
    "renamed": lambda p: p.write_text(json.dumps({**GOOD.to_json(), "name": "other"})),
    "directory": lambda p: (p.mkdir(), (p / "x").write_text("x")),
    "huge": lambda p: p.write_bytes(b" " * ((1 << 20) + 1)),
}


@pytest.fixture
def folder(config_dir: Path) -> Path:
    secret_store.save(GOOD, None)
    return paths.data_dir() / "credentials"


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_credential_is_listed_named_refused_and_removable(
    folder: Path, damage: str
) -> None:
    path = folder / f"{damage}.json"
    DAMAGES[damage](path)

    listed = CliRunner().invoke(cli, ["secret", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = {row["name"]: row for row in json.loads(listed.stdout)["secrets"]}
    assert rows["github"]["damaged"] is None
    assert str(path) in rows[damage]["damaged"] and rows[damage]["fingerprint"] is None
    shown = CliRunner().invoke(cli, ["secret", "list"])
    assert shown.exit_code == 0 and "(damaged)" in shown.stdout
    assert f"warning: {path}: the credential {damage!r} is damaged" in shown.stderr

    with pytest.raises(secret_store.DamagedCredential) as caught:
        secret_store.effective(
            Context().store, "web"
        )  # what a start hands over: refused, the file named
    assert caught.value.path == str(path) and caught.value.exit_code == 1
    assert f"secret rm {damage}" in (caught.value.hint or "")

    removed = CliRunner().invoke(cli, ["secret", "rm", damage])
    assert removed.exit_code == 0, removed.output
    assert not path.exists()
    assert [c.name for c in secret_store.effective(Context().store, "web")] == ["github"]


def test_secret_set_replaces_a_damaged_one_of_its_name(folder: Path) -> None:
    (folder / "anthropic.json").write_text("{")
    secret_store.store_secret(Context(), "anthropic", "sk-ant-" + "b" * 40, [], "api-key")
    assert {c.name for c in secret_store.effective(Context().store, "web")} == {
        "github",
        "anthropic",
    }


def test_secret_set_refuses_while_another_is_damaged(folder: Path) -> None:
    (folder / "broken.json").write_text("{")
    with pytest.raises(secret_store.DamagedCredential, match="broken"):
        secret_store.store_secret(Context(), "anthropic", "sk-ant-" + "b" * 40, [], "api-key")
    assert not (folder / "anthropic.json").exists()


def test_secret_list_shows_every_sessions_own_with_its_scope(folder: Path) -> None:
    for name in ("web", "api"):
        (paths.data_dir() / "sessions" / name).mkdir(parents=True)
        (paths.data_dir() / "sessions" / name / "metadata").write_text(
            f"name={name}\nmode=cli\nstatus=running\ncreated=2026-01-02T03:04:05Z\n"
            f"container=cage-{name}\nschema=2\n"
        )
    token = Secret("npm", "bearer", ("registry.npmjs.org",), "npm_" + "c" * 36, scope="session")
    secret_store.save(token, "web")
    listed = CliRunner().invoke(cli, ["secret", "list", "--json"])
    rows = [(r["name"], r["scope"], r["session"]) for r in json.loads(listed.stdout)["secrets"]]
    assert rows == [("github", "all", None), ("npm", "session", "web")]
    shown = CliRunner().invoke(cli, ["secret", "list"])
    assert "session web" in shown.stdout and "no credentials" not in shown.output
    only_api = CliRunner().invoke(cli, ["secret", "list", "--session", "api", "--json"])
    assert [r["name"] for r in json.loads(only_api.stdout)["secrets"]] == ["github"]
