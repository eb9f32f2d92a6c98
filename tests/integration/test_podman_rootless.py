"""Sessions on a rootless Podman, run by its user as that user runs claude-cage: as
themselves, against their own socket ($XDG_RUNTIME_DIR/podman/podman.sock).

`scripts/ensure-podman --rootless USER` makes the user (with subordinate ids), starts
the service as that user, copies the images into the user's storage and gives a python
holding claude-cage's dependencies; the package itself is a copy of `src/` the user can
read. This machine's cgroups are v1, where Podman ignores every limit for an
unprivileged user: the start is refused, and the tests that go on accept that
(`rootless_without_limits`), which `status` reports as the one failed check.

A session running as the user (keep-id) has the uid that is also every container's
root: it must own neither the socket volume's top nor the companion's out/, and it must
own its ~/.claude. And the script, run as root, must follow no link of the user's."""

from __future__ import annotations

import functools
import http.server
import json
import os
import pwd
import secrets
import shlex
import shutil
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Result
from tests.integration.conftest import make_cert
from tests.integration.model import API_HOST, start_model_server
from tests.integration.podman_setup import ensure_podman, run_ensure_podman
from tests.integration.socket_attack import ATTACK, OUTCOME, WRITTEN_THROUGH, owners
from tests.integration.terminal import DETACH, Terminal
from tests.integration.workspace_helpers import git, make_repo
from tests.isolation import cage_env
from tests.polling import wait_until

pytestmark = pytest.mark.engine

ROOT = Path(__file__).resolve().parents[2]
USER = os.environ.get("CAGE_ROOTLESS_USER", "cage-rootless")
HOST_NAME = "host.containers.internal"  # Podman's name for the host, in each container


@dataclass
class Rootless:
    """claude-cage run as the rootless user, with a data directory of its own."""

    url: str
    python: str
    src: Path
    home: Path
    base: Path
    env: dict[str, str]

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> Result:
        run = subprocess.run(
            self.argv(*args, env=env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
            cwd="/",
        )
        return Result(run.returncode, run.stdout, run.stderr)

    @property
    def podman_command(self) -> tuple[str, ...]:
        """The user's podman, run as the user."""
        account = pwd.getpwnam(USER)
        return ("runuser", "-u", USER, "--", "env", f"HOME={self.home}",
                f"XDG_RUNTIME_DIR=/run/user/{account.pw_uid}", "podman")  # fmt: skip

    def podman(self, *args: str) -> str:
        return subprocess.run(
            [*self.podman_command, *args], capture_output=True, text=True, timeout=120, cwd="/"
        ).stdout

    def argv(self, *args: str, env: dict[str, str] | None = None) -> list[str]:
        """claude-cage's command line as the user, for a terminal of the test's own."""
        account = pwd.getpwnam(USER)
        variables = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.home),
            "TERM": "xterm-256color",
            "XDG_RUNTIME_DIR": f"/run/user/{account.pw_uid}",
            "PYTHONPATH": str(self.src),
            "CAGE_DATA_DIR": str(self.base / "data"),
            "CAGE_CONFIG_DIR": str(self.base / "config"),
            "CAGE_CLAUDE_CONFIG": "off",
            **self.env,
            **(env or {}),
        }
        argv = ["env", "-i", *(f"{k}={v}" for k, v in variables.items())]
        return ["runuser", "-u", USER, "--", *argv, self.python, "-m", "claude_cage", *args]

    def owned(self) -> list[str]:
        import hashlib

        owner = hashlib.sha256(str((self.base / "data").resolve()).encode()).hexdigest()[:12]
        label = f"label=cage.owner={owner}"
        return (
            self.podman("ps", "-a", "-q", "--filter", label).split()
            + self.podman("volume", "ls", "-q", "--filter", label).split()
        )


@pytest.fixture(scope="module")
def setup() -> Iterator[tuple[str, str, Path, Path]]:
    if os.geteuid() != 0:
        pytest.skip("making a rootless user needs root")
    found = ensure_podman("--rootless", USER, what="rootless Podman", timeout=1800)
    url, python = found.split()
    home = Path(pwd.getpwnam(USER).pw_dir)
    src = home / f"cage-src-{uuid.uuid4().hex[:8]}"  # this checkout may be unreadable to USER
    shutil.copytree(ROOT / "src", src, ignore=shutil.ignore_patterns("__pycache__"))
    os.chmod(src, 0o755)
    yield url, python, src, home
    shutil.rmtree(src, ignore_errors=True)


@pytest.fixture
def rootless(setup: tuple[str, str, Path, Path]) -> Iterator[Rootless]:
    url, python, src, home = setup
    base = home / f"cage-test-{uuid.uuid4().hex[:8]}"
    account = pwd.getpwnam(USER)
    for part in (base, base / "config"):
        part.mkdir()
        os.chown(part, account.pw_uid, account.pw_gid)
    instance = Rootless(url, python, src, home, base, dict(cage_env()))
    yield instance
    for ident in instance.owned():
        instance.podman("rm", "-f", ident)
        instance.podman("volume", "rm", "-f", ident)
    shutil.rmtree(base, ignore_errors=True)


@functools.cache
def host_address() -> str:
    """The address Podman gives HOST_NAME in a rootless container (the host's own)."""
    out = subprocess.run(["ip", "-4", "route", "get", "1.1.1.1"], capture_output=True, text=True)
    words = out.stdout.split()
    return words[words.index("src") + 1]


@pytest.fixture
def web() -> Iterator[str]:
    """An HTTP server on the host's address, port 80 (an allowed port), answering 'ok'."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"reached-the-host\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((host_address(), 80), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield host_address()
    server.shutdown()
    server.server_close()


def test_a_start_without_cgroup_limits_is_refused_and_nothing_is_left(
    rootless: Rootless,
) -> None:
    info = json.loads(rootless.podman("info", "--format", "json"))
    if set(info["host"].get("cgroupControllers") or []) >= {"memory", "pids", "cpu"}:
        pytest.skip("this host delegates cgroup controllers to the rootless user")
    refused = rootless("start", "rl-refused", "-d", "--engine", rootless.url)
    assert refused.code == 2, refused.output
    assert "error: rootless Podman here cannot limit memory, CPUs or processes" in refused.stderr
    assert "rootless_without_limits" in refused.stderr and "Traceback" not in refused.output
    assert rootless.owned() == []
    assert not (rootless.base / "data" / "sessions" / "rl-refused").exists()


def test_a_rootless_session_is_sandboxed_and_its_files_are_the_users(
    rootless: Rootless, web: str
) -> None:
    account = pwd.getpwnam(USER)
    project = rootless.base / "project"
    project.mkdir()
    (project / "old.txt").write_text("from the host\n")
    for path in (project, project / "old.txt"):
        os.chown(path, account.pw_uid, account.pw_gid)
    env = {"CAGE_ROOTLESS_WITHOUT_LIMITS": "true", "CAGE_ALLOWED_ADDRESS_RANGES": f"{web}/32"}
    name = "rl-" + uuid.uuid4().hex[:4]
    started = rootless(
        "start", name, "-d", "--engine", rootless.url, "--mount", str(project),
        "--allow-host", HOST_NAME, env=env,
    )  # fmt: skip
    assert started.code == 0, started.output

    # Every check passes but the limits, which this host's cgroups cannot give.
    status = rootless("status", name, "--json", env=env)
    assert status.code == 0, status.output
    checks = {c["check"]: c for c in status.json()["session"]["sandbox"]["checks"]}
    failed = sorted(k for k, c in checks.items() if not c["ok"])
    assert failed == ["limits"], json.dumps(checks, indent=1)
    assert "uid=" + str(account.pw_uid) in checks["inside"]["detail"]

    # The session writes as the user: on the host, the file is the user's.
    wrote = rootless(
        "exec", name, "--", "sh", "-c", "id -u && echo new > /workspace/project/new.txt", env=env
    )
    assert wrote.code == 0 and wrote.stdout.strip() == str(account.pw_uid), wrote.output
    made = (project / "new.txt").stat()
    assert (made.st_uid, made.st_gid) == (account.pw_uid, account.pw_gid)

    # Egress: the allowed host answers through the companion; any other is refused.
    allowed = rootless("exec", name, "--", "curl", "-sS", "-m", "20", f"http://{HOST_NAME}/")
    assert allowed.stdout == "reached-the-host\n", allowed.output
    blocked = rootless(
        "exec", name, "--", "curl", "-sS", "-m", "20", "-o", "/dev/null", "-w", "%{http_code}",
        "http://blocked.example.com/",
    )  # fmt: skip
    assert blocked.stdout.strip() == "403", blocked.output
    direct = rootless(
        "exec", name, "--", "curl", "-sS", "--noproxy", "*", "-m", "5", f"http://{web}/"
    )  # fmt: skip
    assert direct.code != 0, direct.output  # no route out but the companion

    stopped = rootless("stop", name, env=env)
    assert stopped.code == 0, stopped.output
    assert rootless.podman("ps", "-q", "--filter", f"name=cage-{name}").strip() == ""
    destroyed = rootless("destroy", name, "--force", env=env)
    assert destroyed.code == 0, destroyed.output
    assert rootless.owned() == []
    assert (project / "new.txt").read_text() == "new\n"  # the user's files stay


def test_a_writable_mount_of_another_owner_is_refused(rootless: Rootless) -> None:
    other = rootless.base / "other"
    other.mkdir()
    os.chown(other, 4242, 4242)
    os.chmod(rootless.base, 0o755)
    env = {"CAGE_ROOTLESS_WITHOUT_LIMITS": "true"}
    refused = rootless(
        "start", "rl-other", "-d", "--engine", rootless.url, "--mount", str(other), env=env
    )
    assert refused.code == 2, refused.output
    assert "on rootless Podman: a session writes there as uid 4242" in refused.stderr
    assert "Traceback" not in refused.output
    assert rootless.owned() == []


def start_as_the_user(
    rootless: Rootless, prefix: str, more: dict[str, str] | None = None
) -> tuple[str, dict[str, str]]:
    """A session with a read-write mount of the user's: it runs as the user (keep-id)."""
    account = pwd.getpwnam(USER)
    project = rootless.base / "project"
    project.mkdir()
    os.chown(project, account.pw_uid, account.pw_gid)
    env = {"CAGE_ROOTLESS_WITHOUT_LIMITS": "true", **(more or {})}
    name = prefix + uuid.uuid4().hex[:4]
    started = rootless(
        "start", name, "-d", "--engine", rootless.url, "--mount", str(project), env=env
    )
    assert started.code == 0, started.output
    return name, env


def test_a_session_of_the_user_cannot_replace_the_companions_files(
    rootless: Rootless,
) -> None:
    """Under keep-id the session's uid is the host user's, which rootless Podman also
    makes every container's root: the socket volume's top and out/ must be the
    companion's (uid 13, another subordinate id), and the companion must write out/
    through no link the session planted."""
    name, env = start_as_the_user(rootless, "rl-sock-")
    uid = pwd.getpwnam(USER).pw_uid
    attack = rootless("exec", name, "--", "sh", "-c", ATTACK, env=env)
    assert attack.code == 0, attack.output
    found = owners(attack.stdout)
    assert uid not in (found["/sock"], found["/sock/out"]), found
    assert "took-out" not in attack.stdout and "planted" not in attack.stdout, attack.stdout

    assert rootless("stop", name, env=env).code == 0
    restarted = rootless("start", name, "-d", env=env)
    assert restarted.code == 0, restarted.output
    companion = f"companion-cage-{name}"
    assert rootless.podman("exec", companion, "sh", "-c", WRITTEN_THROUGH) == "intact\n"
    kinds = rootless("exec", name, "--", "sh", "-c", OUTCOME, env=env).stdout.splitlines()
    assert [k.rsplit(" ", 1)[0] for k in kinds] == ["directory", "regular file", "regular file"]
    assert all(int(k.rsplit(" ", 1)[1]) != uid for k in kinds), kinds


def test_a_session_of_the_user_writes_its_claude_data(rootless: Rootless) -> None:
    """~/.claude, a volume filled from the image (owned by its uid 1000), is given to
    the session's user, who is the host user here."""
    name, env = start_as_the_user(rootless, "rl-data-")
    script = 'stat -c %u "$HOME/.claude" && touch "$HOME/.claude/written" && echo wrote'
    wrote = rootless("exec", name, "--", "sh", "-c", script, env=env)
    uid = pwd.getpwnam(USER).pw_uid
    assert wrote.code == 0 and wrote.stdout.split() == [str(uid), "wrote"], wrote.output


def test_ensure_podman_follows_no_link_of_the_user_as_root(
    setup: tuple[str, str, Path, Path], tmp_path: Path
) -> None:
    """The user points ~/.config/containers, where the script writes storage.conf, at a
    directory of root's: the script, run as root, refuses it; root's directory is not
    given to the user and nothing is written in it."""
    home = setup[3]
    account = pwd.getpwnam(USER)
    victim = tmp_path / "roots"
    victim.mkdir()
    config = home / ".config" / "containers"
    kept = home / ".config" / "containers.kept"

    def as_user(*command: str) -> None:
        subprocess.run(["runuser", "-u", USER, "--", *command], check=True, cwd="/")

    as_user("mv", "-T", str(config), str(kept))
    try:
        as_user("ln", "-s", str(victim), str(config))
        found = run_ensure_podman("--rootless", USER, timeout=600)
        made = victim.stat()
        assert (made.st_uid, made.st_gid, account.pw_uid != 0) == (0, 0, True)
        assert list(victim.iterdir()) == []
        assert found.returncode == 1, found.stdout + found.stderr
        assert f"{config} is a symbolic link; refusing" in found.stderr
    finally:
        config.unlink(missing_ok=True)
        as_user("mv", "-T", str(kept), str(config))


def test_the_key_is_added_outside_and_attach_works_on_a_terminal(
    rootless: Rootless, test_ca: Path
) -> None:
    """The model server (as api.anthropic.com, on the user's egress network) gets the
    key the companion adds; the session never holds it. Then `attach` on a
    pseudo-terminal shows Claude Code, which keeps working after Ctrl-\\ detaches."""
    account = pwd.getpwnam(USER)
    pki = rootless.base / "pki"  # the test CA's files, where the user can read them
    shutil.copytree(make_cert(test_ca, (API_HOST,)), pki / "tls")
    shutil.copy(test_ca / "ca.pem", pki / "ca.pem")
    for path in (pki, pki / "tls", *pki.rglob("*")):
        os.chown(path, account.pw_uid, account.pw_gid)
    key = f"sk-ant-api03-test-{secrets.token_hex(16)}"
    upstream = {"CAGE_UPSTREAM_CA_CERTS": str(pki / "ca.pem")}
    name, env = start_as_the_user(rootless, "rl-key-", {"ANTHROPIC_API_KEY": key, **upstream})
    server = start_model_server(
        uuid.uuid4().hex[:6], pki / "tls", pki / "ca.pem", engine=rootless.podman_command,
        network=rootless.env.get("CAGE_EGRESS_NETWORK", "cage-filtered"),
    )  # fmt: skip
    try:
        # The server's address is private, which the address guard refuses unless
        # allowed_address_ranges holds it; the companion takes it at the next start.
        address = rootless.podman(
            "inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            server.container,
        ).strip()  # fmt: skip
        env["CAGE_ALLOWED_ADDRESS_RANGES"] = f"{address}/32"
        assert rootless("stop", name, env=env).code == 0
        assert rootless("start", name, "-d", env=env).code == 0
        marker = uuid.uuid4().hex
        call = rootless(
            "exec", name, "--", "sh", "-c",
            "env | grep -c sk-ant-; curl -sS -m 20 -o /dev/null -w '%{http_code}' "
            f"-H 'x-api-key: placeholder' -d '{{}}' "
            f"'https://{API_HOST}/v1/messages/count_tokens?m={marker}'",
            env=env,
        )  # fmt: skip
        assert call.stdout.split() == ["0", "200"], call.output
        [request] = [r for r in server.received() if marker in r["path"]]
        assert request["headers"]["x-api-key"] == key

        terminal = Terminal(rootless.argv("attach", name, env=env), dict(os.environ))
        try:
            terminal.expect("Welcome to Claude Code", timeout=90)  # its own screen
            mark = terminal.type(DETACH)
            text = terminal.expect(f"detached: Claude Code keeps working in {name}", since=mark)
            code = terminal.wait()
        finally:
            terminal.close()
        assert code == 0 and "exited" not in text, text
    finally:
        subprocess.run([*rootless.podman_command, "rm", "-f", server.container], cwd="/",
                       capture_output=True)  # fmt: skip


# A .pth file in the user's own site-packages: any Python of the user's that reads it
# pushes a command into its controlling terminal (TIOCSTI), and notes what it had.
PTH = (
    "import os, fcntl, termios; exec(\"try:\\n fd = os.open('/dev/tty', os.O_RDWR)\\n"
    " open(os.path.expanduser('~/tty-probe'), 'w').write('had a terminal')\\n"
    " for c in b'touch {marker}\\\\n': fcntl.ioctl(fd, termios.TIOCSTI, bytes([c]))\\n"
    'except OSError:\\n pass")\n'
)


def test_ensure_podman_gives_the_user_no_way_into_roots_terminal(
    setup: tuple[str, str, Path, Path], tmp_path: Path
) -> None:
    """Root runs ensure-podman from an interactive shell while the user's venv must be
    made again; the user planted a .pth that types a command into the terminal of any
    Python of theirs. Nothing the user runs has root's terminal: no command of theirs
    reaches root's shell."""
    home = setup[3]
    marker = tmp_path / f"injected-{secrets.token_hex(4)}"
    site = home / ".local" / "lib" / "python3.11" / "site-packages"

    def as_user(*command: str, text: str | None = None) -> None:
        subprocess.run(
            ["runuser", "-u", USER, "--", *command], check=True, cwd="/", input=text, text=True
        )

    as_user("mkdir", "-p", str(site))
    as_user("sh", "-c", f"cat > {site}/cage-probe.pth", text=PTH.format(marker=marker))
    as_user("rm", "-f", str(home / ".cage-python" / ".stamp"), str(home / "tty-probe"))
    script = shlex.join([str(ROOT / "scripts" / "ensure-podman"), "--rootless", USER])
    shell = Terminal(["bash", "--norc", "--noprofile", "-i"], env=dict(os.environ))
    try:  # the markers are computed, so the echo of the typed line does not match them
        shell.type(f"cd / && {script} >/dev/null 2>&1; sleep 1; echo DONE-$((6*7))\r".encode())
        shell.expect("DONE-42", timeout=900)
        shell.type(b"echo IDLE-$((6*8))\r")
        shell.expect("IDLE-48", timeout=30)  # what was typed into it ran before this
    finally:
        shell.close()
        as_user("rm", "-f", str(site / "cage-probe.pth"))
    assert not marker.exists(), "a command of the user's ran in root's shell"
    assert not (home / "tty-probe").exists()  # no Python of theirs had a terminal
    assert (home / ".cage-python" / ".stamp").exists()  # the venv was made again


def test_a_clone_session_of_the_user_and_its_review(rootless: Rootless) -> None:
    """`--clone` on rootless Podman: the session works on its own copy of the user's
    repository, and `diff` and `fetch` bring its commits back to the user's repository,
    owned by the user."""
    account = pwd.getpwnam(USER)
    repo = make_repo(rootless.base / "repo")
    subprocess.run(["chown", "-R", f"{account.pw_uid}:{account.pw_gid}", str(repo)], check=True)
    env = {"CAGE_ROOTLESS_WITHOUT_LIMITS": "true"}
    name = "rl-clone-" + uuid.uuid4().hex[:4]
    started = rootless(
        "start", name, "-d", "--engine", rootless.url, "--clone", str(repo),
        "--network", "none", env=env,
    )  # fmt: skip
    assert started.code == 0, started.output
    work = "echo rootless > made.txt && git add made.txt && git commit -qm 'agent: rootless'"
    done = rootless("exec", name, "--", "sh", "-c", work, env=env)
    assert done.code == 0, done.output
    diff = rootless("diff", name, "--stat", env=env)
    assert diff.code == 0 and "made.txt" in diff.stdout, diff.output
    fetched = rootless("fetch", name, env=env)
    assert fetched.code == 0, fetched.output
    log = git(repo, "log", "--format=%s", f"cage/{name}")
    assert "agent: rootless" in log, log
    refs = repo / ".git" / "refs" / "heads" / "cage" / name
    owner = refs.stat().st_uid if refs.exists() else (repo / ".git" / "packed-refs").stat().st_uid
    assert owner == account.pw_uid  # written by the user's claude-cage, as the user
    assert rootless("destroy", name, "--force", env=env).code == 0
    assert rootless.owned() == []


def test_snapshot_fork_and_restore_of_a_clone_session_of_the_user(rootless: Rootless) -> None:
    """Kept state on rootless Podman: a running session cannot be frozen on cgroup v1,
    so its snapshot is refused in one line with nothing made; a stopped one's snapshot,
    a fork with its own branch (its diff holds only its own work) and a restore work as
    the user, and nothing is left of any of it."""
    account = pwd.getpwnam(USER)
    repo = make_repo(rootless.base / "repo")
    subprocess.run(["chown", "-R", f"{account.pw_uid}:{account.pw_gid}", str(repo)], check=True)
    env = {"CAGE_ROOTLESS_WITHOUT_LIMITS": "true"}
    name, child = "rl-snap-" + uuid.uuid4().hex[:4], "rl-fork-" + uuid.uuid4().hex[:4]
    started = rootless(
        "start", name, "-d", "--engine", rootless.url, "--clone", str(repo),
        "--network", "none", env=env,
    )  # fmt: skip
    assert started.code == 0, started.output

    def inside(session: str, script: str) -> str:
        done = rootless("exec", session, "--", "sh", "-c", script, env=env)
        assert done.code == 0, done.output
        return done.stdout

    inside(name, "git add -A && git commit -qm 'agent: one' && echo kept > kept.txt")
    info = json.loads(rootless.podman("info", "--format", "json"))
    if info["host"].get("cgroupVersion") == "v1":
        refused = rootless("snapshot", name, "--name", f"{name}-r", env=env)
        assert refused.code == 2, refused.output
        assert "cannot pause a container" in refused.stderr and "claude-cage stop" in refused.stderr
        assert "Traceback" not in refused.output and f"{name}-r" not in rootless.podman(
            "volume", "ls"
        )
        assert rootless("stop", name, env=env).code == 0
    taken = rootless("snapshot", name, "--name", f"{name}-s", env=env)
    assert taken.code == 0, taken.output
    again = rootless("start", name, "-d", env=env)
    assert again.code == 0, again.output
    inside(name, "rm kept.txt && echo later > later.txt")
    assert rootless("stop", name, env=env).code == 0

    forked = rootless("fork", name, child, env=env)
    assert forked.code == 0 and "warning" not in forked.output, forked.output
    assert inside(child, "git branch --show-current").strip() == f"cage/{child}"
    inside(child, "echo own > own.txt && git add own.txt && git commit -qm 'fork: own'")
    child_diff = rootless("diff", child, "--stat", env=env)
    assert child_diff.code == 0 and "own.txt" in child_diff.stdout, child_diff.output
    assert "later.txt" not in child_diff.stdout  # its source's work is its start

    restored = rootless("restore", name, f"{name}-s", env=env)
    assert restored.code == 0, restored.output
    assert rootless("start", name, "-d", env=env).code == 0  # it was stopped: it stays so
    assert inside(name, "cat kept.txt; ls later.txt 2>&1 || true").startswith("kept\n")
    assert "No such file" in inside(name, "ls later.txt 2>&1 || true")

    for session in (name, child):
        assert rootless("destroy", session, "--force", "--discard", env=env).code == 0
    assert rootless("snapshot", "rm", f"{name}-s", env=env).code == 0
    assert rootless.owned() == []


def test_a_desktop_session_of_the_user(rootless: Rootless) -> None:
    """Desktop mode on rootless Podman: noVNC on the host's loopback only, the VNC
    server behind it reached only with the session's token and offering only password
    authentication, and the sandbox as in cli mode (only `limits` fails here)."""
    from tests.integration.test_desktop import WebSocket, rfb_security_types

    ensure_podman("--rootless", USER, what="rootless Podman", timeout=1800, desktop=True)
    env = {"CAGE_ROOTLESS_WITHOUT_LIMITS": "true"}
    name = "rd-" + uuid.uuid4().hex[:4]
    started = rootless("start", name, "--mode", "desktop", "-d", "--engine", rootless.url, env=env)
    assert started.code == 0, started.output
    shown = rootless("status", name, "--json", "--show-password", env=env)
    assert shown.code == 0, shown.output
    session = shown.json()["session"]
    failed = sorted(c["check"] for c in session["sandbox"]["checks"] if not c["ok"])
    assert failed == ["limits"], json.dumps(session["sandbox"], indent=1)
    port, token = session["desktop_port"], session["token"]
    assert session["url"] == f"http://127.0.0.1:{port}/vnc.html"
    assert session["token"] not in rootless.podman(
        "inspect", f"cage-{name}", f"companion-cage-{name}"
    )

    with socket.socket() as probe:  # published on the loopback only
        probe.settimeout(5)
        assert probe.connect_ex((host_address(), port)) != 0

    def handshake() -> list[int] | None:
        try:
            ws, types = rfb_security_types(port, token)
        except (AssertionError, EOFError, OSError):
            return None  # x11vnc is still starting
        ws.close()
        return types

    assert wait_until(handshake, timeout=60, what="x11vnc behind noVNC") == [2]
    stray = WebSocket(port, "/websockify?token=wrong")  # no VNC server reached without it
    with pytest.raises(EOFError):
        stray.recv(12)
    stray.close()

    destroyed = rootless("destroy", name, "--force", env=env)
    assert destroyed.code == 0, destroyed.output
    assert rootless.owned() == []


@pytest.mark.parametrize("network", ["none", "host"])
def test_the_other_networks_of_the_user(rootless: Rootless, network: str) -> None:
    """--network none and host on rootless Podman: the mode asked for, no companion, the
    interfaces that mode gives, and every sandbox check but `limits` passing."""
    env = {"CAGE_ROOTLESS_WITHOUT_LIMITS": "true"}
    name = f"rn{network}-" + uuid.uuid4().hex[:4]
    started = rootless("start", name, "-d", "--network", network, "--engine", rootless.url, env=env)
    assert started.code == 0, started.output
    info = json.loads(rootless.podman("inspect", f"cage-{name}"))[0]
    assert info["HostConfig"]["NetworkMode"] == network
    assert not any(
        n.startswith("companion-")
        for n in rootless.podman("ps", "-a", "--format", "{{.Names}}").split()
        if name in n
    )
    links = rootless("exec", name, "--", "sh", "-c", "ls /sys/class/net", env=env).stdout.split()
    if network == "none":
        assert links == ["lo"], links
    else:  # the user's network namespace is the host's here
        assert sorted(links) == sorted(p.name for p in Path("/sys/class/net").iterdir()), links
    status = rootless("status", name, "--json", env=env)
    failed = sorted(
        c["check"] for c in status.json()["session"]["sandbox"]["checks"] if not c["ok"]
    )
    assert failed == ["limits"], status.output
    assert rootless("destroy", name, "--force", env=env).code == 0
    assert rootless.owned() == []
