"""runc against gVisor (runsc), in the same run: what a second kernel costs.

For each runtime, with the same images and flags:
- `start --detach` of a cli session with network none, to a running session;
- the first tool call: `claude -p` in a filtered session whose model (the scripted
  server of tests/integration/model_server.py, on a network of this run as
  api.anthropic.com, over HTTPS with a certificate of this run's own CA, which the
  companion is told to trust) asks for one Bash call, then answers; timed through `exec`;
- `git status` in a mounted project of 10,000 committed files;
- a 100 MiB write (dd, fsync) into the mounted project;
- an idle session's CPU (its cgroup's, over 5 s, Claude Code waiting in tmux), in % of
  one core.

The runc rows are the floors of the runsc ones. Skipped when runsc is not registered.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from harness import BenchError, Ratio, Row, SectionResult, paired, paired_ratios, timed
from harness import run as run_cmd
from pki import make_tls

NAME = "runtimes"
TITLE = "runc vs gVisor (runsc)"
RUNTIMES = ("runc", "runsc")
FILES = 10_000
WRITE_MB = 100
IDLE_S = 5.0
SERVER = Path(__file__).resolve().parents[2] / "tests" / "integration" / "model_server.py"
ONE_TOOL_CALL = {
    "turns": [
        [{"type": "tool_use", "name": "Bash", "input": {"command": "true", "description": "x"}}]
    ],
    "final": "done",
}


def registered(ctx) -> bool:
    out = run_cmd([ctx.docker, "info", "--format", "{{json .Runtimes}}"])
    return '"runsc"' in out


def make_project(root: Path) -> Path:
    """A git repository of FILES committed files, owned by the session's uid 1000."""
    project = root / "proj"
    for i in range(FILES):
        folder = project / f"d{i // 100:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i:05d}.txt").write_text(f"file {i}\n")
    git = ["git", "-C", str(project), "-c", "user.name=b", "-c", "user.email=b@b"]
    run_cmd([*git, "init", "-q"])
    run_cmd([*git, "add", "-A"])
    run_cmd([*git, "commit", "-qm", "files"])
    subprocess.run(["chown", "-R", "1000:1000", str(project)], check=True)
    return project


def run(ctx) -> SectionResult:
    result = SectionResult(NAME, TITLE)
    if not registered(ctx):
        result.notes.append("skipped: runsc is not registered (scripts/ensure-docker)")
        return result
    network = ctx.ws.unique("net")
    run_cmd([ctx.docker, "network", "create", "--label", ctx.ws.label, network])
    try:
        measure(ctx, result, network)
    finally:
        ctx.ws.release()
        subprocess.run([ctx.docker, "network", "rm", network], capture_output=True)
    return result


def measure(ctx, result: SectionResult, network: str) -> None:
    images = {k: v for k, v in os.environ.items() if k.startswith("CAGE_IMAGE_")}
    env = {**ctx.ws.cage_env("runtimes"), **images, "CAGE_EGRESS_NETWORK": network}
    # The model server's address is on this network: the proxy's address guard must
    # hold this network's subnet, not the default one's cage_env named.
    env["CAGE_ALLOWED_ADDRESS_RANGES"] = ctx.ws.egress_subnets(network)
    cfg = ctx.config(env)
    ca, tls = make_tls(ctx.ws.root / "runtimes-tls")
    server = ctx.ws.unique("model")
    argv = [ctx.docker, "run", "-d", "--name", server, "--label", ctx.ws.label]
    argv += ["--network", network, "--network-alias", "api.anthropic.com", "--user", "0"]
    argv += ["-v", f"{SERVER}:/model_server.py:ro", "-v", f"{tls}:/tls:ro"]
    argv += ["--entrypoint", "python3", cfg["image_companion"], "/model_server.py"]
    run_cmd([*argv, "--cert", "/tls/cert.pem", "--key", "/tls/key.pem"])
    script = json.dumps(ONE_TOOL_CALL)
    load = "import sys,urllib.request;urllib.request.urlopen(urllib.request.Request("
    load += "'http://127.0.0.1/_script',data=sys.stdin.buffer.read(),method='POST'))"
    for _ in range(50):
        done = subprocess.run(
            [ctx.docker, "exec", "-i", server, "python3", "-c", load],
            input=script, capture_output=True, text=True,
        )  # fmt: skip
        if done.returncode == 0:
            break
        time.sleep(0.1)
    else:
        raise BenchError("the model server did not come up")

    project = make_project(ctx.ws.root / "runtimes")
    sessions = {}
    for runtime in RUNTIMES:
        name = ctx.ws.session_name(runtime)
        run_cmd(
            [ctx.cage, "start", "--detach", "--name", name, "--runtime", runtime,
             "--mount", str(project)],
            {**env, "ANTHROPIC_API_KEY": "sk-ant-bench-0123456789",
             "CAGE_UPSTREAM_CA_CERTS": str(ca)},
        )  # fmt: skip
        sessions[runtime] = name

    def cage_start(runtime: str) -> float:
        name = ctx.ws.session_name("s")
        argv = [ctx.cage, "start", "--detach", "--name", name, "--runtime", runtime]
        seconds = timed([*argv, "--network", "none", "--no-persist"], env)
        ctx.destroy(env, name)
        return seconds

    def in_session(runtime: str, command: str) -> float:
        return timed([ctx.cage, "exec", sessions[runtime], "--", "sh", "-c", command], env)

    work = f"cd /workspace/{project.name}"
    # Its output is shown only when it fails (the harness prints the end of stderr).
    claude = (
        f"{work} && out=$(claude -p go --dangerously-skip-permissions </dev/null 2>&1)"
        ' || { printf "%s\\n" "$out" >&2; exit 1; }'
    )
    write = f"{work} && dd if=/dev/zero of=big bs=1M count={WRITE_MB} conv=fsync 2>/dev/null"
    measurements = (
        ("start --detach (cli, none)", cage_start),
        ("first tool call (claude -p, one Bash call)", lambda r: in_session(r, claude)),
        (f"git status, {FILES:,} files", lambda r: in_session(r, f"{work} && git status -s")),
        (f"{WRITE_MB} MiB write + fsync", lambda r: in_session(r, f"{write}; rm -f big")),
        ("exec of `true` (the floor of the three above)", lambda r: in_session(r, "true")),
    )

    def idle_cpu(runtime: str) -> float:
        """The session's cgroup's CPU over IDLE_S, Claude Code waiting in its tmux: in
        cores (0.01 = 1% of one)."""
        from claude_cage import cgroups
        from claude_cage.engine import answers

        raw = json.loads(run_cmd([ctx.docker, "inspect", f"cage-{sessions[runtime]}"]))[0]
        info = answers.from_docker_inspect(raw)

        def used() -> int:
            facts = cgroups.read(info)
            if not facts or not facts.get("cpu_ns", "").isdigit():
                raise BenchError(f"cannot read the cgroup of cage-{sessions[runtime]}")
            return int(facts["cpu_ns"])

        before = used()
        time.sleep(IDLE_S)
        return (used() - before) / 1e9 / IDLE_S

    for label, measure_one in measurements:
        samples = paired(
            {f"{label} [{r}]": (lambda r=r, m=measure_one: m(r)) for r in RUNTIMES}, ctx.reps
        )
        labels = list(samples)
        for row_label, values in samples.items():
            result.rows.append(Row(NAME, row_label, values))
        result.ratios.append(
            Ratio(NAME, labels[1], labels[0], paired_ratios(samples[labels[1]], samples[labels[0]]))
        )
    # Not paired against a floor: an idle session should cost next to nothing on either.
    for runtime in RUNTIMES:
        samples = [idle_cpu(runtime) for _ in range(min(ctx.reps, 3))]
        label = f"idle session CPU, {IDLE_S:.0f} s [{runtime}]"
        result.rows.append(Row(NAME, label, samples, unit="% of a core", scale=100.0))
