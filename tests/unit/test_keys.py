"""`key set` takes an Anthropic API key and nothing else, unless told to (--force)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from claude_cage.cli import main
from claude_cage.errors import BadInput
from claude_cage.operations.keys import check_key_shape

KEY = "sk-ant-api03-" + "a1B2_c3-" * 12


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "no key was given"),
        ("\n", "no key was given"),
        ("not-a-key", "does not look like an Anthropic API key"),
        ("ghp_0123456789abcdef0123456789abcdef0123", "does not look like"),
        ("sk-ant-api03-short", "does not look like"),
        ("sk-ant-api03-" + "x" * 40 + "\x1b]52;c;", "characters an API key never has"),
    ],
)
def test_what_is_not_a_key_is_refused_without_echoing_it(text: str, words: str) -> None:
    with pytest.raises(BadInput) as caught:
        check_key_shape(text)
    assert words in caught.value.message
    if len(text.strip()) > 4:
        assert text.strip() not in caught.value.message + str(caught.value.hint)


def test_a_key_is_taken_trimmed() -> None:
    assert check_key_shape(f"  {KEY}\n") == KEY


def test_key_set_refuses_a_word_and_says_how_to_force(
    config_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = Path(str(config_dir)).parent / "data" / "sessions" / "web"
    data.mkdir(parents=True)
    (data / "metadata").write_text(
        "name=web\nmode=cli\nstatus=running\ncreated=2026-01-02T03:04:05Z\n"
        "container=cage-web\nnetwork=filtered\nschema=2\n"
    )
    monkeypatch.setattr("sys.argv", ["claude-cage", "key", "set", "web"])
    monkeypatch.setattr("sys.stdin", io.StringIO("not-a-key\n"))
    with pytest.raises(SystemExit) as exited:
        main()
    out = capsys.readouterr()
    assert exited.value.code == 2, out
    assert "does not look like an Anthropic API key" in out.err
    assert "--force" in out.err
    assert "key updated" not in out.err + out.out
