"""A project's own image in the cage, on the real engine: `build --from` on a
Debian-based image and on a real Ubuntu one (and the refusal of others), and
devcontainer.json: its Dockerfile, containerEnv, lifecycle commands, forwardPorts and
workspaceFolder; the refusal of a key that would weaken the sandbox; the host's copy
read, never the session's; the image found again by its content on a second start.

No registry is reachable here: the project images are built FROM the Debian base the
stock images were built from (claude-cage-base:bookworm, or the stock image's own
Debian), and the cage's layer takes its tools from the stock image. The Ubuntu base is
made by debootstrap from Ubuntu's archive (scripts/ensure-debootstrap installs it) and
kept on the engine under a tag naming its recipe, so the suite pays for it once.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REQUIRE_ENGINE, Cage, runsc_registered
from tests.integration.conftest import make_cert
from tests.oci_registry import Registry

pytestmark = pytest.mark.engine

BASE = "claude-cage-base:bookworm"
# A real Ubuntu 24.04: its minimal base and Python (a project's toolchain that the stock
# image has in another version). The tag names the recipe: change one, change both.
UBUNTU = "cage-test-ubuntu:noble-minbase-python3-1"
UBUNTU_INCLUDE = "ca-certificates,python3"
UBUNTU_MIRROR = "http://archive.ubuntu.com/ubuntu"  # Release checked against the keyring
UBUNTU_KEYRING = "/usr/share/keyrings/ubuntu-archive-keyring.gpg"


def docker(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, input=input)


def build_image(tag: str, dockerfile: str) -> None:
    """An image from a Dockerfile with no context (docker build -)."""
    done = docker("build", "-q", "-t", tag, "-", input=dockerfile)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def base() -> str:
    if docker("image", "inspect", BASE).returncode != 0:
        pytest.skip(f"{BASE} (the stock images' Debian base) is not on this engine")
    return BASE


@pytest.fixture(scope="module")
def ubuntu(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Ubuntu 24.04 from its archive: debootstrap (minbase) into a folder, imported as
    an image; made once per engine, then found by its tag."""
    if docker("image", "inspect", UBUNTU).returncode == 0:
        return UBUNTU
    scripts = Path("/usr/share/debootstrap/scripts")
    if not shutil.which("debootstrap") or not Path(UBUNTU_KEYRING).is_file():
        missing = "debootstrap and Ubuntu's keyring are missing: run scripts/ensure-debootstrap"
        pytest.fail(missing) if REQUIRE_ENGINE else pytest.skip(missing)
    # An older debootstrap has no script named for noble; gutsy's serves every Ubuntu.
    script = scripts / "noble" if (scripts / "noble").exists() else scripts / "gutsy"
    rootfs = tmp_path_factory.mktemp("ubuntu") / "rootfs"
    try:
        made = subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={UBUNTU_INCLUDE}",
             f"--keyring={UBUNTU_KEYRING}", "noble", str(rootfs), UBUNTU_MIRROR, str(script)],
            capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        assert made.returncode == 0, made.stdout[-2000:] + made.stderr[-2000:]
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            ["docker", "import", "-", UBUNTU], stdin=tar.stdout, capture_output=True, text=True
        )
        assert tar.wait() == 0 and imported.returncode == 0, imported.stderr
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    return UBUNTU


@pytest.fixture
def images() -> Iterator[list[str]]:
    """Images a test makes, removed after it."""
    made: list[str] = []
    yield made
    if made:
        docker("rmi", "-f", *made)


def dev_images(project: Path) -> list[str]:
    repo = f"claude-cage-dev-{project.name.lower()}"
    out = docker("images", "--format", "{{.Repository}}:{{.Tag}}", repo).stdout.split()
    return [image for image in out if image.startswith(repo)]


def status(cage: Cage, name: str) -> dict:
    run = cage("status", name, "--json")
    assert run.code == 0, run.stderr
    return run.json()["session"]  # type: ignore[no-any-return]


def in_session(name: str, script: str) -> str:
    done = docker("exec", f"cage-{name}", "sh", "-c", script)
    return done.stdout + done.stderr


# --- build --from ---------------------------------------------------------------------


def test_build_from_a_debian_image(cage: Cage, base: str, images: list[str]) -> None:
    """A user's Debian-based image gets the cage's layer; a session started with it
    passes the sandbox verification, runs Claude Code as uid 1000 in tmux, and keeps the
    project image's own files."""
    project = f"cage-test-project-{uuid.uuid4().hex[:6]}:1"
    session_image = f"cage-test-layered-{uuid.uuid4().hex[:6]}:1"
    images += [project, session_image]
    build_image(project, f"FROM {base}\nRUN echo project-file > /etc/project-marker\n")
    built = cage("build", "--from", project, "--tag", session_image, timeout=600)
    assert built.code == 0, built.stderr
    assert built.stdout.strip() == session_image
    labels = json.loads(docker("image", "inspect", session_image).stdout)[0]["Config"]["Labels"]
    assert labels["cage.from"] == project and labels["cage.image"] == "cli"
    assert labels["cage.claude-code-version"] != "unset"

    name = cage.name()
    started = cage("start", name, "--image", session_image, "--network", "none", "-d")
    assert started.code == 0, started.stderr
    session = status(cage, name)
    assert session["sandbox"]["ok"], session["sandbox"]
    inside = in_session(
        name, "cat /etc/project-marker; id -u; claude --version; tmux -V; cage-agent state"
    )
    assert "project-file" in inside and "\n1000\n" in inside
    assert "(Claude Code)" in inside and "tmux " in inside
    assert "running" in inside or "exited" in inside  # cage-agent answers: tmux runs

    if not runsc_registered():
        return
    # On gVisor: the image is asked itself (its verdict kept by image id), then runs.
    on_gvisor = cage.name()
    started = cage("start", on_gvisor, "--image", session_image, "--network", "none",
                   "--runtime", "runsc", "-d")  # fmt: skip
    assert started.code == 0, started.stderr
    session = status(cage, on_gvisor)
    assert session["sandbox"]["ok"], session["sandbox"]
    image_id = docker("image", "inspect", "-f", "{{.Id}}", session_image).stdout.strip()
    verdicts = json.loads((cage.data_dir / "gvisor.json").read_text())
    assert verdicts[image_id]["ok"], verdicts


def test_build_from_a_real_ubuntu_image(cage: Cage, ubuntu: str, images: list[str]) -> None:
    """A project image on a real Ubuntu 24.04 (debootstrapped from Ubuntu's archive),
    with its uid 1000 taken by `ubuntu` as in the official image: `build --from` layers
    it, that user gives way to the session's, the session passes the sandbox
    verification, and the project's own toolchain (Ubuntu's Python 3.12, not the stock
    image's 3.11) is the one on PATH."""
    project = f"cage-test-ubuntu-project-{uuid.uuid4().hex[:6]}:1"
    session_image = f"cage-test-layered-{uuid.uuid4().hex[:6]}:1"
    images += [project, session_image]
    build_image(
        project,
        f"FROM {ubuntu}\nRUN useradd --uid 1000 --user-group --create-home ubuntu\n",
    )
    built = cage("build", "--from", project, "--tag", session_image, timeout=600)
    assert built.code == 0, built.stderr
    name = cage.name()
    started = cage("start", name, "--image", session_image, "--network", "none", "-d")
    assert started.code == 0, started.stderr
    session = status(cage, name)
    assert session["sandbox"]["ok"], session["sandbox"]
    inside = in_session(
        name,
        '. /etc/os-release; echo "os=$NAME $VERSION_ID"; id -un; id -u; '
        "getent passwd ubuntu || echo no-ubuntu; command -v python3; python3 --version; "
        "claude --version; cage-agent state",
    )
    assert "os=Ubuntu 24.04\n" in inside, inside
    assert "\nclaude\n1000\n" in inside and "no-ubuntu" in inside, inside
    assert "/usr/bin/python3\nPython 3.12." in inside, inside
    assert "(Claude Code)" in inside, inside
    assert "running" in inside or "exited" in inside, inside


def test_build_from_refuses_an_image_that_is_not_debian(
    cage: Cage, base: str, images: list[str]
) -> None:
    """An image of another distribution is refused with one line that says so, before
    anything is tagged; so is one with no shell at all."""
    other = f"cage-test-fedora-{uuid.uuid4().hex[:6]}:1"
    images.append(other)
    build_image(
        other,
        f"FROM {base}\nRUN printf 'ID=fedora\\nPRETTY_NAME=\"Fedora Linux 41\"\\n' "
        "> /etc/os-release.new && mv /etc/os-release.new /etc/os-release\n",
    )
    tag = f"cage-test-refused-{uuid.uuid4().hex[:6]}:1"
    refused = cage("build", "--from", other, "--tag", tag, timeout=600)
    assert refused.code == 2, refused.stderr
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: Fedora Linux 41 is not Debian- or Ubuntu-based: the cage's layer "
        "supports only those"
    ], refused.stderr
    assert "Traceback" not in refused.stderr
    assert docker("image", "inspect", tag).returncode != 0

    alpine_like = f"cage-test-alpine-{uuid.uuid4().hex[:6]}:1"
    images.append(alpine_like)
    build_image(
        alpine_like,
        f"FROM {base}\nRUN printf 'ID=alpine\\nPRETTY_NAME=\"Alpine Linux v3.20\"\\n' "
        "> /etc/os-release.new && mv /etc/os-release.new /etc/os-release\n",
    )
    refused = cage("build", "--from", alpine_like, "--tag", tag, timeout=600)
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert refused.code == 2 and len(errors) == 1 and "Alpine (musl)" in errors[0], errors


# --- devcontainer.json ----------------------------------------------------------------


def make_project(root: Path, config: dict | str, dockerfile: str | None = None) -> Path:
    """A git repository with a .devcontainer/ folder."""
    project = root / f"proj{uuid.uuid4().hex[:6]}"
    (project / ".devcontainer").mkdir(parents=True)
    (project / "app").mkdir()
    (project / "app" / "main.py").write_text("print('hello')\n")
    text = config if isinstance(config, str) else json.dumps(config, indent=2)
    (project / ".devcontainer" / "devcontainer.json").write_text(text)
    if dockerfile is not None:
        (project / ".devcontainer" / "Dockerfile").write_text(dockerfile)
    git = ["git", "-C", str(project), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "project"], check=True)
    return project


CONFIG = """// The project's dev container (JSONC: comments, trailing commas)
{
  "name": "demo",
  "build": {
    "dockerfile": "Dockerfile",
    "context": "..",
    "args": { "GREETING": "hello-${localEnv:LC_CAGE_GREETING:nobody}" },
  },
  "containerEnv": { "PROJECT_MARK": "mark-${containerWorkspaceFolderBasename}" },
  "remoteEnv": {
    "PROJECT_TWO": "${containerEnv:PROJECT_MARK}-two",
    "PATH": "${containerEnv:PATH}:/opt/project/bin",
  },
  /* once per session, as the session's user; its output kept for logs --raw */
  "postCreateCommand": "echo created-$(id -u) >> $HOME/.claude/created; echo create-ran",
  "postStartCommand": ["sh", "-c", "echo started >> $HOME/.claude/started"],
  "forwardPorts": [PORT],
  "workspaceFolder": "${containerWorkspaceFolder}/app",
}
"""


@pytest.fixture
def dev_project(tmp_path: Path, base: str) -> Iterator[Path]:
    port = 20000 + uuid.uuid4().int % 20000
    project = make_project(
        tmp_path,
        CONFIG.replace("PORT", str(port)),
        f'FROM {base}\nARG GREETING\nRUN echo "$GREETING" > /etc/project-greeting\n',
    )
    yield project
    docker("rmi", "-f", *dev_images(project))


def test_devcontainer_dockerfile_env_lifecycle_and_ports(cage: Cage, dev_project: Path) -> None:
    """A clone of a project with a devcontainer.json runs in its Dockerfile's image with
    the cage on top: the sandbox passes, containerEnv/remoteEnv are set, the create
    command ran once as the session's user (its output in logs --raw), postStartCommand
    at every start, the forwarded port is published, the agent works in workspaceFolder."""
    name = cage.name()
    started = cage(
        "start", name, "--clone", str(dev_project), "--network", "none", "-d", "--json",
        env={"LC_CAGE_GREETING": "from-host"},
        timeout=600,
    )  # fmt: skip
    assert started.code == 0, started.stderr
    assert "(image claude-cage-dev-" in started.json()["devcontainer"]
    assert started.json()["devcontainer"].endswith(", built)")
    session = status(cage, name)
    assert session["sandbox"]["ok"], session["sandbox"]
    assert session["devcontainer"] == str(dev_project / ".devcontainer" / "devcontainer.json")
    config = (dev_project / ".devcontainer/devcontainer.json").read_text()
    port = re.search(r'"forwardPorts": \[(\d+)\]', config).group(1)  # type: ignore[union-attr]
    inside = in_session(
        name,
        "cat /etc/project-greeting; echo $PROJECT_MARK $PROJECT_TWO; "
        "cat $HOME/.claude/created $HOME/.claude/started",
    )
    assert "hello-from-host" in inside
    assert f"mark-{dev_project.name} mark-{dev_project.name}-two" in inside
    path = in_session(name, "echo $PATH").strip()
    assert path.startswith("/opt/cage/bin:") and path.endswith(":/opt/project/bin"), path
    assert inside.count("created-1000") == 1 and inside.count("started") == 1
    raw = cage("logs", name, "--raw")
    assert "create-ran" in raw.stdout, raw.stdout
    published = docker("port", f"companion-cage-{name}").stdout
    assert f"{port}/tcp -> 127.0.0.1:{port}" in published, published
    pane = in_session(name, "tmux -S /run/cage/tmux.sock display -p -t agent: '#{pane_start_path}'")
    assert pane.strip() == f"/workspace/{dev_project.name}/app", pane

    assert cage("stop", name).code == 0
    again = cage("start", name, "-d")
    assert again.code == 0, again.stderr
    inside = in_session(name, "cat $HOME/.claude/created $HOME/.claude/started")
    assert inside.count("created-1000") == 1  # once per session
    assert inside.count("started") == 2  # at every start


def test_devcontainer_image_is_cached_by_content(cage: Cage, dev_project: Path) -> None:
    """A second session of the same project builds nothing: the image of the first is
    found by its content key. A change of the Dockerfile makes a new one. (The sessions
    take turns: each forwards the same port.)"""
    first, second, third = cage.name(), cage.name(), cage.name()
    one = cage("start", first, "--clone", str(dev_project), "--network", "none", "-d",
               "--json", timeout=600)  # fmt: skip
    assert one.code == 0, one.stderr
    assert cage("stop", first).code == 0  # its forwarded port is free again
    two = cage("start", second, "--clone", str(dev_project), "--network", "none", "-d",
               "--json", timeout=600)  # fmt: skip
    assert two.code == 0, two.stderr
    assert two.json()["devcontainer"].endswith(", cached)"), two.json()
    assert status(cage, first)["image"] == status(cage, second)["image"]
    assert cage("stop", second).code == 0

    dockerfile = dev_project / ".devcontainer" / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + "RUN echo changed > /etc/changed\n")
    three = cage("start", third, "--clone", str(dev_project), "--network", "none", "-d",
                 "--json", timeout=600)  # fmt: skip
    assert three.code == 0, three.stderr
    assert three.json()["devcontainer"].endswith(", built)")
    assert status(cage, third)["image"] != status(cage, first)["image"]


def test_devcontainer_image_key(cage: Cage, tmp_path: Path, base: str) -> None:
    """`image` names the project's image directly; --no-devcontainer keeps the stock
    image; config devcontainer: off as well."""
    project = make_project(tmp_path, {"image": base, "containerEnv": {"FROM_IMAGE_KEY": "yes"}})
    try:
        name = cage.name()
        started = cage("start", name, "--clone", str(project), "--network", "none", "-d",
                       timeout=600)  # fmt: skip
        assert started.code == 0, started.stderr
        assert "FROM_IMAGE_KEY=yes" in in_session(name, "env")
        assert status(cage, name)["sandbox"]["ok"]
        stock = cage.name()
        plain = cage("start", stock, "--clone", str(project), "--network", "none", "-d",
                     "--no-devcontainer")  # fmt: skip
        assert plain.code == 0, plain.stderr
        assert "FROM_IMAGE_KEY" not in in_session(stock, "env")
        assert not status(cage, stock)["image"].startswith("claude-cage-dev-")
        off = cage.name()
        by_config = cage("start", off, "--clone", str(project), "--network", "none", "-d",
                         env={"CAGE_DEVCONTAINER": "off"})  # fmt: skip
        assert by_config.code == 0, by_config.stderr
        assert not status(cage, off)["image"].startswith("claude-cage-dev-")
    finally:
        docker("rmi", "-f", *dev_images(project))


@pytest.mark.parametrize(
    ("key", "value"),
    [("privileged", True), ("capAdd", ["SYS_ADMIN"]), ("runArgs", ["--privileged"]),
     ("mounts", ["source=/,target=/host,type=bind"]), ("securityOpt", ["seccomp=unconfined"]),
     ("init", False), ("initializeCommand", "touch /tmp/on-the-host")],
)  # fmt: skip
def test_devcontainer_weakening_key_is_refused(
    cage: Cage, tmp_path: Path, base: str, key: str, value: object
) -> None:
    """ATTACK: a project's devcontainer.json asks for what would weaken the sandbox, or
    for a command on the host. The start is refused with one line naming the key, and
    leaves nothing behind."""
    project = make_project(tmp_path, {"image": base, key: value})
    name = cage.name()
    refused = cage("start", name, "--clone", str(project), "--network", "none", "-d")
    assert refused.code == 2, refused.stderr
    assert refused.stderr.splitlines()[0].startswith(f"error: devcontainer.json key '{key}'")
    assert "Traceback" not in refused.stderr
    assert cage("list", "--json").json()["sessions"] == []
    assert docker("inspect", f"cage-{name}").returncode != 0
    assert not Path("/tmp/on-the-host").exists() or key != "initializeCommand"


def test_devcontainer_read_from_the_host_copy_only(cage: Cage, tmp_path: Path, base: str) -> None:
    """ATTACK: the agent rewrites .devcontainer/devcontainer.json in its clone (a
    privileged container, a postStartCommand of its own) and commits it. The session's
    next start keeps what the host's copy said; a new session of the project reads the
    host's copy, which the agent cannot reach."""
    project = make_project(
        tmp_path,
        {"image": base, "postStartCommand": "echo host-start >> $HOME/.claude/started"},
    )
    try:
        name = cage.name()
        started = cage("start", name, "--clone", str(project), "--network", "none", "-d",
                       timeout=600)  # fmt: skip
        assert started.code == 0, started.stderr
        clone = f"/workspace/{project.name}"
        evil = json.dumps(
            {
                "image": base,
                "privileged": True,
                "postStartCommand": "echo agent-start >> $HOME/.claude/started",
            }
        )
        edit = in_session(
            name,
            f"cd {clone} && printf '%s' '{evil}' > .devcontainer/devcontainer.json && "
            "git -c user.email=a@a -c user.name=a commit -qam agent && echo edited",
        )
        assert "edited" in edit, edit
        assert cage("stop", name).code == 0
        again = cage("start", name, "-d")
        assert again.code == 0, again.stderr
        started_lines = in_session(name, "cat $HOME/.claude/started")
        assert "agent-start" not in started_lines
        assert started_lines.count("host-start") == 2
        assert status(cage, name)["sandbox"]["ok"]
        assert "privileged" not in (project / ".devcontainer/devcontainer.json").read_text()
        fresh = cage.name()
        new = cage("start", fresh, "--clone", str(project), "--network", "none", "-d")
        assert new.code == 0, new.stderr  # the host's copy: no privileged key to refuse
        assert "agent-start" not in in_session(fresh, "cat $HOME/.claude/started")
    finally:
        docker("rmi", "-f", *dev_images(project))


def test_devcontainer_image_cannot_label_its_session_a_probe(
    cage: Cage, tmp_path: Path, base: str
) -> None:
    """ATTACK: a project's Dockerfile labels its image `cage.probe` (a container takes
    its image's labels), so its session would look like a probe of a doctor that is
    gone: gc and doctor would remove it while it runs, with no archive, and it would not
    count towards max_sessions. The start is refused in one line, and no session is
    left; gc finds nothing to remove."""
    project = make_project(
        tmp_path, {"build": {"dockerfile": "Dockerfile"}}, f"FROM {base}\nLABEL cage.probe=x\n"
    )
    try:
        name = cage.name()
        refused = cage("start", name, "--clone", str(project), "--network", "none", "-d",
                       timeout=600)  # fmt: skip
        assert refused.code == 2, refused.stdout + refused.stderr
        assert "carries the label cage.probe" in refused.stderr.splitlines()[0], refused.stderr
        assert "Traceback" not in refused.stderr
        assert docker("inspect", f"cage-{name}").returncode != 0
        assert cage("list", "--json").json()["sessions"] == []
        assert "probe" not in cage("gc", "--dry-run").stdout
    finally:
        docker("rmi", "-f", *dev_images(project))


def test_devcontainer_image_with_a_volume_is_refused(cage: Cage, tmp_path: Path, base: str) -> None:
    """ATTACK: a project's Dockerfile declares a VOLUME the session's user may write (a
    postgres-style data directory): the session would get an anonymous volume on the
    engine's disk, outside its volumes' size limits and labels, to fill the host's disk
    and be left behind. The start is refused in one line, before the cage's layer is
    built, and no session is left."""
    project = make_project(
        tmp_path,
        {"build": {"dockerfile": "Dockerfile"}},
        f"FROM {base}\nUSER root\nRUN mkdir -m 1777 /var/lib/data\nVOLUME /var/lib/data\n",
    )
    try:
        name = cage.name()
        refused = cage("start", name, "--clone", str(project), "--network", "none", "-d",
                       timeout=600)  # fmt: skip
        assert refused.code == 2, refused.stdout + refused.stderr
        first = refused.stderr.splitlines()[0]
        assert "declares VOLUME /var/lib/data" in first, refused.stderr
        assert "Traceback" not in refused.stderr
        assert docker("inspect", f"cage-{name}").returncode != 0
        assert cage("list", "--json").json()["sessions"] == []
    finally:
        docker("rmi", "-f", *dev_images(project))


def test_devcontainer_local_feature_is_built_in(cage: Cage, tmp_path: Path, base: str) -> None:
    """A local feature (./folder in .devcontainer/) is installed at build as root, with
    its options (and their defaults) as environment variables and its containerEnv set."""
    project = make_project(
        tmp_path,
        {"image": base, "features": {"./greeter": {"greeting": "hi-from-feature"}}},
    )
    feature = project / ".devcontainer" / "greeter"
    feature.mkdir()
    (feature / "devcontainer-feature.json").write_text(
        json.dumps(
            {
                "id": "greeter",
                "options": {"greeting": {"default": "hello"}, "loud": {"default": "no"}},
                "containerEnv": {"GREETER_HOME": "/opt/greeter"},
            }
        )
    )
    (feature / "install.sh").write_text(
        '#!/bin/sh\nset -e\nmkdir -p /opt/greeter\necho "$GREETING $LOUD $(id -u)" '
        "> /opt/greeter/said\n"
    )
    subprocess.run(["git", "-C", str(project), "add", "-A"], check=True)
    try:
        name = cage.name()
        started = cage("start", name, "--clone", str(project), "--network", "none", "-d",
                       timeout=600)  # fmt: skip
        assert started.code == 0, started.stderr
        inside = in_session(name, "cat /opt/greeter/said; echo $GREETER_HOME")
        assert "hi-from-feature no 0" in inside and "/opt/greeter" in inside, inside
        assert status(cage, name)["sandbox"]["ok"]
    finally:
        docker("rmi", "-f", *dev_images(project))


# --- remote features, from a registry's mirror ----------------------------------------

GREETER = {
    "devcontainer-feature.json": json.dumps(
        {
            "id": "greeter",
            "version": "1.0.0",
            "options": {
                "greeting": {"type": "string", "default": "hello"},
                "loud-voice": {"type": "boolean", "default": False},
            },
            "containerEnv": {"GREETER_HOME": "/opt/greeter"},
        }
    ),
    "install.sh": "#!/bin/sh\nset -e\nmkdir -p /opt/greeter\n"
    'echo "$GREETING $LOUD_VOICE $(id -u) $_REMOTE_USER" > /opt/greeter/said\n',
}


@pytest.fixture
def registry(test_ca: Path) -> Iterator[Registry]:
    """The tests' OCI registry over TLS (a certificate of the test CA for localhost),
    answering as the mirror of registry.test: no request leaves this machine."""
    tls = make_cert(test_ca, ("localhost",))
    with Registry("registry.test", (tls / "cert.pem", tls / "key.pem")) as running:
        yield running


def mirror_env(registry: Registry, test_ca: Path) -> dict[str, str]:
    return {
        "CAGE_FEATURE_REGISTRY_MIRRORS": json.dumps({registry.host: registry.url}),
        "CAGE_FEATURE_REGISTRY_CA": str(test_ca / "ca.pem"),
    }


def test_devcontainer_remote_feature_from_a_mirror(
    cage: Cage, tmp_path: Path, base: str, registry: Registry, test_ca: Path
) -> None:
    """A feature named by its registry reference is pulled through the configured
    mirror (TLS with the configured CA, the anonymous token of its challenge), its
    digest checked, and installed at build as root with its options as upper-cased
    variables and its containerEnv set. A second session of the project builds nothing
    and pulls no layer again: the feature is cached by digest in the data directory."""
    ref = registry.add("cage/features/greeter", "1", GREETER)
    project = make_project(
        tmp_path, {"image": base, "features": {ref: {"greeting": "hi-from-registry"}}}
    )
    env = mirror_env(registry, test_ca)
    try:
        name = cage.name()
        started = cage("start", name, "--clone", str(project), "--network", "none", "-d",
                       "--json", env=env, timeout=600)  # fmt: skip
        assert started.code == 0, started.stderr
        assert started.json()["devcontainer"].endswith(", built)")
        inside = in_session(name, "cat /opt/greeter/said; echo $GREETER_HOME")
        assert "hi-from-registry false 0 claude" in inside and "/opt/greeter" in inside, inside
        assert status(cage, name)["sandbox"]["ok"]
        assert any(p.startswith("/token?") for p in registry.requests)
        assert len(registry.blob_requests()) == 1
        cached = list((cage.data_dir / "cache" / "features").iterdir())
        assert [p.name for p in cached] == [registry.blob_requests()[0].rpartition(":")[2]]

        second = cage.name()
        again = cage("start", second, "--clone", str(project), "--network", "none", "-d",
                     "--json", env=env, timeout=600)  # fmt: skip
        assert again.code == 0, again.stderr
        assert again.json()["devcontainer"].endswith(", cached)")
        assert len(registry.blob_requests()) == 1  # the layer came from the cache

        # Unused for feature_cache_days: gc removes it and names it in --json; the
        # sessions built with it stay.
        layer = cached[0]
        os.utime(layer, (time.time() - 31 * 86400,) * 2)
        collected = cage("gc", "--json")
        assert collected.code == 0, collected.stderr
        features = [i for i in collected.json()["items"] if i["kind"] == "feature"]
        why = "a feature not used for 30 days"
        assert features == [
            {"session": "", "kind": "feature", "target": str(layer), "reason": why,
             "outcome": "removed"}
        ]  # fmt: skip
        assert not layer.exists() and status(cage, second)["sandbox"]["ok"]
    finally:
        docker("rmi", "-f", *dev_images(project))


def test_devcontainer_features_install_in_dependency_order(
    cage: Cage, tmp_path: Path, base: str, registry: Registry, test_ca: Path
) -> None:
    """A local feature's dependsOn on a registry feature (not in devcontainer.json) pulls
    it and installs it first, with the options dependsOn gives; another feature's
    installsAfter puts it after the one it names, whatever their names sort to."""
    ref = registry.add(
        "cage/features/greeter", "1",
        {**GREETER, "install.sh": '#!/bin/sh\necho "greeter $GREETING" >> /opt/order\n'},
    )  # fmt: skip
    project = make_project(tmp_path, {"image": base, "features": {"./app": {}, "./early": {}}})
    for folder, meta in (
        ("app", {"id": "app", "dependsOn": {ref: {"greeting": "from-dependsOn"}}}),
        ("early", {"id": "early", "installsAfter": ["./app"]}),
    ):
        feature = project / ".devcontainer" / folder
        feature.mkdir()
        (feature / "devcontainer-feature.json").write_text(json.dumps(meta))
        (feature / "install.sh").write_text(f"#!/bin/sh\necho {folder} >> /opt/order\n")
    subprocess.run(["git", "-C", str(project), "add", "-A"], check=True)
    try:
        name = cage.name()
        started = cage("start", name, "--clone", str(project), "--network", "none", "-d",
                       env=mirror_env(registry, test_ca), timeout=600)  # fmt: skip
        assert started.code == 0, started.stderr
        assert in_session(name, "cat /opt/order") == "greeter from-dependsOn\napp\nearly\n"
    finally:
        docker("rmi", "-f", *dev_images(project))


def test_devcontainer_tampered_remote_feature_builds_nothing(
    cage: Cage, tmp_path: Path, base: str, registry: Registry, test_ca: Path
) -> None:
    """ATTACK: the registry serves a feature whose bytes are not the ones its manifest's
    digest names (a compromised mirror, something on the way). The start is refused in
    one line naming the digest, before anything is built or kept; a tag the registry
    does not have is one line too, exit 3; a registry whose certificate the configured
    trust does not vouch for is refused."""
    ref = registry.add("cage/features/greeter", "1", GREETER)
    registry.tamper("cage/features/greeter", "1")
    project = make_project(tmp_path, {"image": base, "features": {ref: {}}})
    try:
        name = cage.name()
        refused = cage("start", name, "--clone", str(project), "--network", "none", "-d",
                       env=mirror_env(registry, test_ca))  # fmt: skip
        assert refused.code == 1, refused.stderr
        errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "as its manifest says" in errors[0], refused.stderr
        assert "hint:" in refused.stderr and "Traceback" not in refused.stderr
        assert cage("list", "--json").json()["sessions"] == []
        assert docker("inspect", f"cage-{name}").returncode != 0
        assert dev_images(project) == []
        cache = cage.data_dir / "cache" / "features"
        assert not cache.exists() or list(cache.iterdir()) == []
    finally:  # a build the check let through (it must not) is removed
        docker("rmi", "-f", *dev_images(project))

    missing = make_project(
        tmp_path, {"image": base, "features": {f"{registry.host}/cage/features/greeter:9": {}}}
    )
    gone = cage("start", cage.name(), "--clone", str(missing), "--network", "none", "-d",
                env=mirror_env(registry, test_ca))  # fmt: skip
    assert gone.code == 3, gone.stderr
    assert "(404)" in gone.stderr and "Traceback" not in gone.stderr

    # ATTACK: a server that is not the mirror the CA vouches for (here: the CA not
    # given) is refused at TLS, before any manifest is read.
    no_ca = {"CAGE_FEATURE_REGISTRY_MIRRORS": json.dumps({registry.host: registry.url})}
    untrusted = cage("start", cage.name(), "--clone", str(missing), "--network", "none", "-d",
                     env=no_ca)  # fmt: skip
    assert untrusted.code == 1, untrusted.stderr
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr, untrusted.stderr
    assert "Traceback" not in untrusted.stderr
