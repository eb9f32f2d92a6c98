"""What the user asks for, checked before anything is created: session names, mounts,
ports and env."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest

from claude_cage import names, parsing
from claude_cage.errors import BadInput
from claude_cage.parsing import Mount, parse_env, parse_mount, parse_mounts, parse_port

GENERATED = re.compile(r"^[a-z]+-[a-z]+-[0-9a-f]{4}$")

# --- names ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["a", "0", "web", "my-proj", "my_proj.v2", "a" * 63, "9lives", "x-", "a..b"]
)
def test_good_names(name: str) -> None:
    assert names.check_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "A", "MyProj", "-x", "_x", ".x", "a" * 64, "a b", "a/b", "../x", "a:b", "a\nb", "é", "a$"],
)
def test_bad_names(name: str) -> None:
    with pytest.raises(BadInput) as err:
        names.check_name(name)
    assert err.value.exit_code == 2 and err.value.hint


def test_generated_names() -> None:
    generated = {names.generate_name() for _ in range(200)}
    assert len(generated) > 150  # random, not a fixed few
    for name in generated:
        assert GENERATED.match(name), name
        assert names.check_name(name) == name
        adjective, noun, _suffix = name.split("-")
        assert adjective in names.ADJECTIVES and noun in names.NOUNS


def test_object_names() -> None:
    assert names.container_name("web") == "cage-web"
    assert names.companion_name("web") == "companion-cage-web"
    assert names.data_volume("web") == "cage-data-web"
    assert names.socket_volume("web") == "cage-sock-web"
    # A companion's name is never a session container's name.
    assert not names.companion_name("web").startswith("cage-")


# --- mounts ---------------------------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home" / "user"
    path.mkdir(parents=True)
    return path


@pytest.fixture
def project(home: Path) -> Path:
    path = home / "code" / "project"
    path.mkdir(parents=True)
    return path


def refused(spec: str, home: Path, reason: str) -> None:
    with pytest.raises(BadInput) as err:
        parse_mount(spec, home)
    assert err.value.exit_code == 2 and err.value.hint
    assert reason in err.value.message, err.value.message


def test_mount_binds_to_workspace_basename(project: Path, home: Path) -> None:
    assert parse_mount(str(project), home) == Mount(str(project), "/workspace/project", False)


def test_mount_read_only(project: Path, home: Path) -> None:
    assert parse_mount(f"{project}:ro", home) == Mount(str(project), "/workspace/project", True)
    assert parse_mount(f"{project}:rw", home).read_only is False


def test_mount_resolves_symlinks(project: Path, home: Path, tmp_path: Path) -> None:
    link = tmp_path / "shortcut"
    link.symlink_to(project)
    mount = parse_mount(f"{link}:ro", home)
    assert mount == Mount(str(project), "/workspace/project", True)


def test_mount_resolves_relative_paths(
    project: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project.parent)
    assert parse_mount("./project", home).source == str(project)


def test_mount_inside_home_is_fine(home: Path, project: Path) -> None:
    assert parse_mount(str(home / "code"), home).target == "/workspace/code"


@pytest.mark.parametrize("spec", ["/", "/:ro", "/.", "/tmp/.."])
def test_refuses_root(spec: str, home: Path) -> None:
    refused(spec, home, "root of the filesystem")


def test_refuses_home_and_its_ancestors(home: Path) -> None:
    for path in (home, home.parent, home.parent.parent):
        refused(str(path), home, "home directory")
        refused(f"{path}:ro", home, "home directory")


def test_refuses_home_through_a_symlink(home: Path, tmp_path: Path) -> None:
    link = tmp_path / "innocent"
    link.symlink_to(home)
    refused(str(link), home, "home directory")


def test_refuses_tilde(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    monkeypatch.setenv("HOME", str(home))
    refused("~", home, "home directory")
    with pytest.raises(BadInput):
        parse_mount("~")  # the real default: Path.home()


@pytest.mark.parametrize(
    "path",
    ["/etc", "/etc/ssl", "/proc", "/proc/self", "/sys", "/sys/kernel", "/dev", "/dev/shm",
     "/dev/null"],
)  # fmt: skip
def test_refuses_system_trees(path: str, home: Path) -> None:
    if not os.path.exists(path):
        pytest.skip(f"{path} does not exist here")
    refused(path, home, "system directory")


@pytest.mark.parametrize("tree", ["/var/lib/docker", "/var/lib/containerd", "/run/containerd"])
def test_refuses_engine_state_and_the_directories_above_it(
    tree: str, home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = tmp_path / "root" / tree.lstrip("/")
    (fake / "overlay2").mkdir(parents=True)
    monkeypatch.setattr(parsing, "FORBIDDEN_TREES", (str(fake),))
    for path in (fake, fake / "overlay2", fake.parent):
        refused(str(path), home, "system directory")
    sibling = fake.parent / "elsewhere"
    sibling.mkdir()
    assert parse_mount(str(sibling), home).source == str(sibling)


@pytest.fixture
def fake_docker_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real unix socket standing in for the Docker socket."""
    run = tmp_path / "srv" / "run"
    run.mkdir(parents=True)
    path = run / "docker.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    monkeypatch.setattr(parsing, "DOCKER_SOCKETS", (str(path),))
    yield path
    server.close()


def test_refuses_docker_socket_and_dirs_containing_it(
    fake_docker_socket: Path, home: Path, tmp_path: Path
) -> None:
    refused(str(fake_docker_socket), home, "Docker socket")
    refused(f"{fake_docker_socket.parent}:ro", home, "Docker socket")
    refused(str(tmp_path / "srv"), home, "Docker socket")
    link = tmp_path / "sock-link"
    link.symlink_to(fake_docker_socket)
    refused(str(link), home, "Docker socket")


def test_refuses_the_socket_docker_host_names(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sock_dir = tmp_path / "engine"
    sock_dir.mkdir()
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock_dir / "engine.sock"))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{sock_dir / 'engine.sock'}")
    try:
        refused(str(sock_dir), home, "Docker socket")
    finally:
        server.close()


def test_refuses_the_data_directory(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "srv" / "cage-data"
    (data / "sessions").mkdir(parents=True)
    monkeypatch.setenv("CAGE_DATA_DIR", str(data))
    refused(str(data / "sessions"), home, "data directory")
    refused(str(tmp_path / "srv"), home, "data directory")


def test_refuses_the_config_directory(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its policy.yaml (the user layer) and config.yaml are the next start's policy: an
    agent that could write them would widen its own egress."""
    config = tmp_path / "dotfiles" / "claude-cage"
    config.mkdir(parents=True)
    monkeypatch.setenv("CAGE_CONFIG_DIR", str(config))
    refused(str(config), home, "config directory")
    refused(str(tmp_path / "dotfiles"), home, "config directory")


@pytest.mark.parametrize("path", ["/var/run/docker.sock", "/run/docker.sock", "/var/run", "/run"])
def test_refuses_the_real_docker_socket(path: str, home: Path) -> None:
    if not os.path.exists("/run/docker.sock"):
        pytest.skip("no Docker socket on this machine")
    refused(path, home, "Docker socket")


@pytest.mark.parametrize("suffix", ["", ":ro"])
def test_refuses_missing_paths(tmp_path: Path, home: Path, suffix: str) -> None:
    refused(f"{tmp_path / 'nope'}{suffix}", home, "no such file or directory")


def test_refuses_a_dangling_symlink(tmp_path: Path, home: Path) -> None:
    link = tmp_path / "dangling"
    link.symlink_to(tmp_path / "gone")
    refused(str(link), home, "no such file or directory")


@pytest.mark.parametrize("spec", ["", ":ro", ":rw"])
def test_refuses_empty_paths(spec: str, home: Path) -> None:
    with pytest.raises(BadInput):
        parse_mount(spec, home)


def test_refuses_duplicate_basenames(tmp_path: Path) -> None:
    one, two = tmp_path / "a" / "src", tmp_path / "b" / "src"
    one.mkdir(parents=True)
    two.mkdir(parents=True)
    with pytest.raises(BadInput) as err:
        parse_mounts([str(one), f"{two}:ro"])
    assert "/workspace/src" in err.value.message


def test_several_mounts(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    mounts = parse_mounts([str(tmp_path / "a"), f"{tmp_path / 'b'}:ro"])
    assert [(m.target, m.read_only) for m in mounts] == [
        ("/workspace/a", False),
        ("/workspace/b", True),
    ]


def test_mount_text_round_trip(project: Path, home: Path) -> None:
    mount = parse_mount(f"{project}:ro", home)
    source, target, flag = mount.to_text().rsplit(":", 2)
    assert Mount(source, target, flag == "ro") == mount


# --- env ------------------------------------------------------------------------------


def test_env() -> None:
    assert parse_env(["DEBUG=1", "EMPTY=", "URL=http://x/?a=b"]) == {
        "DEBUG": "1",
        "EMPTY": "",
        "URL": "http://x/?a=b",
    }


@pytest.mark.parametrize(
    "key",
    ["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CAGE_BRIDGES", "CAGE_CREDENTIAL",
     "CAGE_SESSION", "HOME", "CLAUDE_CONFIG_DIR"],
)  # fmt: skip
def test_reserved_env(key: str) -> None:
    secret = "sk-ant-test-do-not-echo"
    with pytest.raises(BadInput) as err:
        parse_env([f"{key}={secret}"])
    assert err.value.exit_code == 2 and "reserved" in err.value.message
    assert secret not in err.value.message and secret not in (err.value.hint or "")


@pytest.mark.parametrize("spec", ["NOEQUALS", "=value", "1ABC=x", "A-B=x", "A B=x", ""])
def test_bad_env(spec: str) -> None:
    with pytest.raises(BadInput) as err:
        parse_env([spec])
    assert err.value.exit_code == 2


# --- ports ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "ports"), [("8080:3000", (8080, 3000)), ("1:65535", (1, 65535)), (" 80:80 ", (80, 80))]
)
def test_ports(spec: str, ports: tuple[int, int]) -> None:
    assert parse_port(spec) == ports


@pytest.mark.parametrize(
    "spec",
    ["", "80", "0:80", "80:0", "70000:80", "80:70000", "a:b", "8080:3000:1",
     "127.0.0.1:8080:3000", "-1:80", "8080/tcp:80", "123456:1"],
)  # fmt: skip
def test_bad_ports(spec: str) -> None:
    with pytest.raises(BadInput) as err:
        parse_port(spec)
    assert err.value.exit_code == 2 and err.value.hint
