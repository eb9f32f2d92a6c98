"""Sessions on a rootful Podman, through its Docker-compatible API: the sandbox as
Podman itself reports it (`podman inspect`) and as the session sees it from inside, the
attacks of test_sandbox.py refused there too, egress refused by the companion, `list`
across Docker and Podman at once, a desktop session driven in a real browser, and
nothing left behind.

`scripts/ensure-podman` installs Debian's podman when it is missing, starts its service
and copies the images from Docker; `make test` runs this file with the rest."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import isolation
from tests.conftest import Cage, egress_subnets
from tests.integration.conftest import make_cert
from tests.integration.model import API_HOST, ModelServer, start_model_server
from tests.integration.podman_setup import ensure_podman
from tests.integration.terminal import DETACH, Terminal, plain
from tests.integration.test_desktop import (  # noqa: F401 (browser: a fixture)
    KEY,
    browser,
    in_session,
    is_connected,
    show_desktop,
    tmux_clients,
    wait_for,
)
from tests.polling import wait_until

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def podman_url() -> str:
    return ensure_podman(what="Podman engine", timeout=900).strip()


def podman(*args: str) -> str:
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, check=True, timeout=120
    ).stdout


def podman_owned(owner: str) -> list[str]:
    label = f"label=cage.owner={owner}"
    containers = podman("ps", "-a", "-q", "--filter", label).split()
    volumes = podman("volume", "ls", "-q", "--filter", label).split()
    return containers + volumes


@pytest.fixture
def on_podman(cage: Cage, podman_url: str) -> Iterator[Cage]:
    yield cage
    label = f"label=cage.owner={cage.owner()}"
    for ident in podman("ps", "-a", "-q", "--filter", label).split():
        subprocess.run(["podman", "rm", "-f", ident], capture_output=True, timeout=120)
    for ident in podman("volume", "ls", "-q", "--filter", label).split():
        subprocess.run(["podman", "volume", "rm", "-f", ident], capture_output=True, timeout=120)


def test_a_filtered_session_on_podman_is_sandboxed(on_podman: Cage, podman_url: str) -> None:
    cage = on_podman
    name = cage.name("pd")
    started = cage("start", name, "-d", "--engine", podman_url)
    assert started.code == 0, started.output

    # What Podman itself reports, in its own words.
    info = json.loads(podman("inspect", f"cage-{name}"))[0]
    host = info["HostConfig"]
    assert host["ReadonlyRootfs"] is True
    assert not info.get("BoundingCaps") and not host.get("CapAdd")  # no capability left
    assert "no-new-privileges" in host["SecurityOpt"]
    profile = next(o for o in host["SecurityOpt"] if o.startswith("seccomp="))
    assert json.loads(Path(profile.removeprefix("seccomp=")).read_text())["defaultAction"]
    assert info["Config"]["User"].split(":")[0] not in ("", "0", "root")
    assert host["NetworkMode"] == "none"
    assert info["OCIRuntime"] == "runc"

    status = cage("status", name, "--json")
    assert status.code == 0, status.output
    sandbox = status.json()["session"]["sandbox"]
    assert sandbox["ok"], json.dumps(sandbox, indent=1)

    # From inside: no capabilities, the seccomp filter, no new privileges, read-only root.
    proc = cage(
        "exec", name, "--", "grep", "-E", "^(CapEff|Seccomp|NoNewPrivs):", "/proc/self/status"
    )
    facts = dict(line.split(":\t") for line in proc.stdout.strip().splitlines())
    assert facts == {"CapEff": "0000000000000000", "Seccomp": "2", "NoNewPrivs": "1"}, proc.output

    # The attacks of test_sandbox.py, refused on Podman too.
    for path in ("/etc/owned", "/var/tmp/owned"):  # read-only root, as on Docker
        assert cage("exec", name, "--", "touch", path).code != 0, path
    raw = "import socket; socket.socket(socket.AF_PACKET, socket.SOCK_RAW)"
    packet = cage("exec", name, "--", "python3", "-c", raw)
    assert packet.code != 0 and "PermissionError" in packet.stderr, packet.output
    out = cage(
        "exec", name, "--", "curl", "-sS", "--noproxy", "*", "-m", "5", "http://1.1.1.1/"
    )  # fmt: skip
    assert out.code != 0, out.output  # no route out but the companion
    blocked = cage(
        "exec", name, "--", "curl", "-sS", "-m", "20", "-o", "/dev/null", "-w", "%{http_code}",
        "http://blocked.example.com/",
    )  # fmt: skip
    assert blocked.stdout.strip() == "403", blocked.output  # the companion refuses

    destroyed = cage("destroy", name, "--force")
    assert destroyed.code == 0, destroyed.output
    assert podman_owned(cage.owner()) == []


def test_list_shows_docker_and_podman_sessions_at_once(on_podman: Cage, podman_url: str) -> None:
    cage = on_podman
    (cage.config_dir / "config.yaml").write_text(f"engines: [{podman_url}]\n")
    on_docker, on_pod = cage.name("dk"), cage.name("pd")
    assert cage("start", on_docker, "-d").code == 0
    started = cage("start", on_pod, "-d", "--engine", podman_url)
    assert started.code == 0, started.output
    listed = {s["name"]: s for s in cage("list", "--json").json()["sessions"]}
    assert listed[on_docker]["status"] == listed[on_pod]["status"] == "running", listed
    assert listed[on_pod]["engine"] == podman_url and listed[on_docker]["engine"] != podman_url
    doctor = cage("doctor", "--json", "--no-probe").json()
    [found] = [c for c in doctor["checks"] if c["check"] == "podman"]
    assert found["status"] == "ok" and podman_url in found["detail"], found
    for name in (on_docker, on_pod):
        assert cage("destroy", name, "--force").code == 0
    assert podman_owned(cage.owner()) == []


def test_gvisor_on_podman_is_refused_and_nothing_is_left(on_podman: Cage, podman_url: str) -> None:
    cage = on_podman
    name = cage.name("pg")
    refused = cage("start", name, "-d", "--runtime", "runsc", "--engine", podman_url)
    assert refused.code == 2, refused.output
    assert "error: runtime 'runsc' on Podman" in refused.stderr
    assert "Traceback" not in refused.output
    assert podman_owned(cage.owner()) == []
    assert not (cage.data_dir / "sessions" / name).exists()


def test_build_with_buildah_then_a_session_on_its_images(on_podman: Cage, podman_url: str) -> None:
    """`build --engine PODMAN` builds the Dockerfiles there (Podman's builder is Buildah)
    when that engine has the base image, and a session runs sandboxed on what it built."""
    cage = on_podman
    tag = f"buildah-{cage.name('b')}"
    base = "claude-cage-base:bookworm"  # what the Docker build bootstrapped (no registry)
    if subprocess.run(["docker", "image", "inspect", base], capture_output=True).returncode:
        base = "debian:bookworm-slim"
    saved = subprocess.run(
        f"docker save {base} | podman load", shell=True, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert saved.returncode == 0, saved.stderr
    images = {
        "CAGE_IMAGE_CLI": f"claude-cage-cli:{tag}",
        "CAGE_IMAGE_COMPANION": f"claude-cage-companion:{tag}",
    }
    try:
        built = cage(
            "build", "cli", "--engine", podman_url, "--base", base, env=images, timeout=1800
        )
        assert built.code == 0, built.output
        assert "sending the images" not in built.output  # built there, not copied
        # Built by Podman's builder: no image of the Docker engine has its id (a copy
        # sent with `docker save` would keep it).
        on_docker = subprocess.run(
            ["docker", "images", "-q", "--no-trunc"], capture_output=True, text=True
        ).stdout.split()
        for image in images.values():
            ident = podman("image", "inspect", "--format", "{{.Id}}", image).strip()
            assert ident and not any(ident in d for d in on_docker), (image, ident)
        name = cage.name("bh")
        started = cage("start", name, "-d", "--engine", podman_url, env=images)
        assert started.code == 0, started.output
        assert json.loads(podman("inspect", f"cage-{name}"))[0]["ImageName"].endswith(tag)
        status = cage("status", name, "--json", env=images)
        sandbox = status.json()["session"]["sandbox"]
        assert sandbox["ok"], json.dumps(sandbox, indent=1)
        version = cage("exec", name, "--", "claude", "--version", env=images)
        assert "Claude Code" in version.stdout, version.output
        assert cage("destroy", name, "--force", env=images).code == 0
    finally:
        for image in images.values():
            subprocess.run(["podman", "rmi", "-f", image], capture_output=True, timeout=120)


@pytest.mark.parametrize("network", ["none", "host"])
def test_the_other_networks_on_podman(on_podman: Cage, podman_url: str, network: str) -> None:
    """--network none and host on Podman: Podman reports the mode asked for, the session
    sees the interfaces that mode gives, and `status` passes its sandbox checks."""
    cage = on_podman
    name = cage.name(f"n{network}")
    started = cage("start", name, "-d", "--network", network, "--engine", podman_url)
    assert started.code == 0, started.output
    info = json.loads(podman("inspect", f"cage-{name}"))[0]
    assert info["HostConfig"]["NetworkMode"] == network
    assert not podman_owned_companion(cage.owner())  # neither mode has a companion
    links = cage("exec", name, "--", "sh", "-c", "ls /sys/class/net").stdout.split()
    if network == "none":
        assert links == ["lo"], links
    else:
        host_links = sorted(p.name for p in Path("/sys/class/net").iterdir())
        assert sorted(links) == host_links, links
    sandbox = cage("status", name, "--json").json()["session"]["sandbox"]
    assert sandbox["ok"], json.dumps(sandbox, indent=1)
    assert cage("destroy", name, "--force").code == 0
    assert podman_owned(cage.owner()) == []


def podman_owned_companion(owner: str) -> list[str]:
    label = f"label=cage.owner={owner}"
    return [n for n in podman("ps", "-a", "--format", "{{.Names}}", "--filter", label).split()
            if n.startswith("companion-")]  # fmt: skip


@pytest.fixture(scope="module")
def podman_model(podman_url: str, test_ca: Path) -> Iterator[tuple[ModelServer, str]]:
    """The scripted model server as api.anthropic.com on Podman's egress network, and
    that network's subnet (its address is private: the address guard must allow it)."""
    network = isolation.EGRESS_NETWORK
    if subprocess.run(["podman", "network", "exists", network]).returncode:
        podman("network", "create", "--label", "managed-by=claude-cage", "--label",
               "cage.role=network", network)  # fmt: skip
    subnet = podman("network", "inspect", "--format", "{{range .Subnets}}{{.Subnet}} {{end}}",
                    network).strip()  # fmt: skip
    tls = make_cert(test_ca, (API_HOST,))
    server = start_model_server(
        uuid.uuid4().hex[:6], tls, test_ca / "ca.pem", engine=("podman",), network=network,
        # Podman's own default limits may exceed this host's hard ones (engine/podman.py)
        run_options=("--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"),
    )  # fmt: skip
    try:
        yield server, subnet
    finally:
        subprocess.run(["podman", "rm", "-f", server.container], capture_output=True, timeout=120)


@pytest.mark.slow
def test_a_desktop_session_on_podman(
    on_podman: Cage,
    podman_url: str,
    podman_model: tuple[ModelServer, str],
    browser: Any,  # noqa: F811
) -> None:
    """A desktop on Podman: sandboxed as on Docker (Podman's own inspect, `status`), noVNC
    published on loopback only by the companion, a real browser logged in through `open`'s
    page sees Claude Code's terminal (its model the test server, on Podman's egress
    network), `attach` joins that Claude Code, `status` reads the image's health, and
    `destroy` leaves nothing on Podman."""
    cage = on_podman
    ensure_podman(what="Podman engine", timeout=900, desktop=True)  # its image, once
    server, subnet = podman_model
    ranges = f"{egress_subnets()} {subnet}".strip()
    env = {"ANTHROPIC_API_KEY": KEY, "CAGE_ALLOWED_ADDRESS_RANGES": ranges,
           **server.session_env()}  # fmt: skip
    name = cage.name("pdk")
    started = cage("start", "--mode", "desktop", "--name", name, "-d", "--engine", podman_url,
                   env=env)  # fmt: skip
    assert started.code == 0, started.output
    wait_for(lambda: tmux_clients(cage, name) == 1, "the desktop's terminal attached")
    wait_for(lambda: bool(in_session(cage, name, "pgrep", "-x", "claude")), "Claude Code")
    session = cage("status", name, "--json", "--show-password").json()["session"]
    port, password, token = session["desktop_port"], session["password"], session["token"]
    assert session["engine"] == podman_url

    info = json.loads(podman("inspect", f"cage-{name}"))[0]
    host = info["HostConfig"]
    assert host["ReadonlyRootfs"] is True
    assert not info.get("BoundingCaps") and not host.get("CapAdd")
    assert "no-new-privileges" in host["SecurityOpt"]
    profile = next(o for o in host["SecurityOpt"] if o.startswith("seccomp="))
    assert json.loads(Path(profile.removeprefix("seccomp=")).read_text())["defaultAction"]
    assert info["Config"]["User"] == "1000:1000"
    assert host["NetworkMode"] == "none" and not host.get("PortBindings")
    companion = json.loads(podman("inspect", f"companion-cage-{name}"))[0]
    sources = (companion["HostConfig"]["PortBindings"], companion["NetworkSettings"]["Ports"])
    published = [
        (binding["HostIp"], binding["HostPort"])
        for source in sources
        for bindings in (source or {}).values()
        for binding in bindings or []
    ]
    assert published and set(published) == {("127.0.0.1", str(port))}, published
    for container in (f"cage-{name}", f"companion-cage-{name}"):  # the secrets: files only
        shown = podman("inspect", container) + podman("logs", container)
        assert password not in shown and token not in shown and KEY not in shown

    def healthy() -> bool:  # the image's health check, on a Podman without systemd too
        return bool(cage("status", name, "--json").json()["session"]["health"] == "healthy")

    wait_until(healthy, 60, "the desktop's health check passing")
    status = cage("status", name, "--json").json()["session"]
    assert status["sandbox"]["ok"], json.dumps(status["sandbox"], indent=1)
    checks = {c["check"]: c["ok"] for c in status["sandbox"]["checks"]}
    assert checks["desktop bridge"] and checks["egress proxy bridge"], checks

    # A real browser, on the page `claude-cage open` hands it.
    assert cage("open", name, "--no-browser").code == 0
    launcher = cage.data_dir / "sessions" / name / "open.html"
    page = browser.new_page()
    try:
        stats = show_desktop(page, launcher, "podman-desktop.png")
        assert is_connected(page)
        assert stats["bg"] > 0.3 and stats["fg"] > 0.001, stats  # the terminal, with text
    finally:
        page.close()
    pane = cage("exec", name, "--", "tmux", "-S", "/run/cage/tmux.sock", "capture-pane", "-p")
    assert "Choose the text style" in pane.stdout, pane.output  # Claude Code's first screen

    # attach joins the Claude Code the desktop shows; Ctrl-\ lets it go.
    terminal = Terminal([sys.executable, "-m", "claude_cage", "attach", name], cage.env)
    try:
        terminal.expect("Choose the text style", timeout=60)  # the same Claude Code
        assert tmux_clients(cage, name) == 2  # the desktop's terminal and this one
        mark = terminal.type(DETACH)
        code = terminal.wait(30)
        assert code == 0, plain(terminal.output)
        assert "detached: Claude Code keeps working" in plain(terminal.output[mark:])
    finally:
        terminal.close()
    assert tmux_clients(cage, name) == 1  # the desktop's terminal stays
    assert server.received(), "Claude Code asked the model server nothing"

    destroyed = cage("destroy", name, "--force")
    assert destroyed.code == 0, destroyed.output
    assert podman_owned(cage.owner()) == []
    assert not (cage.data_dir / "sessions" / name).exists()


@pytest.mark.slow
def test_an_ephemeral_desktop_on_podman_goes_when_it_stops(
    on_podman: Cage, podman_url: str
) -> None:
    """Podman removes a container with AutoRemove while its stop is answered, and then
    answers the calls that follow with a 500 ("no such container"): `stop` of an
    ephemeral desktop takes that as gone, and leaves nothing. A race, so three rounds."""
    cage = on_podman
    ensure_podman(what="Podman engine", timeout=900, desktop=True)
    name = cage.name("pe")
    for _ in range(3):
        started = cage("start", "--mode", "desktop", "--name", name, "-d", "--ephemeral",
                       "--network", "none", "--engine", podman_url)  # fmt: skip
        assert started.code == 0, started.output
        wait_for(lambda: bool(in_session(cage, name, "pgrep", "-x", "xterm")), "its terminal")
        stopped = cage("stop", name)
        assert stopped.code == 0, stopped.output
        assert "removed (ephemeral)" in stopped.stderr, stopped.output
        assert podman_owned(cage.owner()) == []
        assert not (cage.data_dir / "sessions" / name).exists()


def test_gc_leaves_a_podman_sessions_bounded_volumes_alone(
    on_podman: Cage, podman_url: str
) -> None:
    """The volumes' size limits are filesystems in the data directory (quota.py), found by
    `gc` against the engines' volumes: a session's on Podman are there, not on Docker."""
    cage = on_podman
    name = cage.name("pgc")
    started = cage("start", name, "-d", "--network", "none", "--engine", podman_url)
    assert started.code == 0, started.output
    planned = cage("gc", "--dry-run", "--json").json()
    assert not [i for i in planned["items"] if i["session"] == name], planned
    assert cage("gc").code == 0
    wrote = cage("exec", name, "--", "sh", "-c", "echo kept > ~/.claude/probe; cat ~/.claude/probe")
    assert wrote.stdout == "kept\n", wrote.output
    destroyed = cage("destroy", name, "--force")  # archives the data volume: mounts it anew
    assert destroyed.code == 0, destroyed.output
    assert podman_owned(cage.owner()) == []


def test_a_health_check_that_never_ends_stalls_no_command(on_podman: Cage, podman_url: str) -> None:
    """Podman before 5.5 waits for a health check past its timeout, and a session's agent
    can stop its own check (SIGSTOP, as the same user) or build an image whose check does
    not end. `inspect` of such a container, which runs the check when no timer has, waits
    for it HEALTH_CHECK_WAIT once a command, and the engine still answers after."""
    from claude_cage.engine.client import HEALTH_CHECK_WAIT, Engine
    from claude_cage.engine.endpoints import Endpoint

    name = f"hc-{uuid.uuid4().hex[:8]}"
    podman("run", "-d", "--name", name, "--label", f"cage.owner={on_podman.owner()}",
           "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096",
           "--health-cmd", "sleep 600", "--health-interval", "1s", "--health-timeout", "2s",
           "--entrypoint", "sleep", isolation.IMAGE_CLI, "900")  # fmt: skip
    time.sleep(2.5)  # two of its intervals without a check: inspect runs it
    engine = Engine(Endpoint("", podman_url), timeout=60)
    began = time.monotonic()
    for _ in range(3):
        found = engine.inspect(name)
        assert found is not None and found.running
    assert time.monotonic() - began < HEALTH_CHECK_WAIT + 10
    listed = engine.list_containers([f"cage.owner={on_podman.owner()}"])  # still answers
    assert [c.name for c in listed] == [name]
