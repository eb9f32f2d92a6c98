"""The address guard: what refusing internal addresses costs each request.

Squid checks every request for an allowed name against the guard's list with a `dst`
ACL (images/companion/squid.conf, `cage_blocked_dst`): a lookup in its DNS cache and a
search of the list. To measure that alone, the section starts a filtered session and,
inside its companion, two more squids made from the companion's own configuration, each
on ports of its own: one identical but for the ports ("with the guard"), one also
without the guard's two `http_access deny ... cage_blocked_dst` lines ("without").
A client in the companion then makes sequential GETs of a 1 KiB file on a test host of
the egress network through each, on one kept-alive connection, in paired repetitions.
"""

from __future__ import annotations

import json

from harness import BenchError, Ratio, Row, SectionResult, paired, paired_ratios
from harness import run as run_cmd

from sections.proxy import wait_for_host

NAME = "guard"
TITLE = "the address guard: per-request cost of the dst check"
REQUESTS = 300
SERVE = (
    "mkdir -p /tmp/www && head -c 1024 /dev/zero > /tmp/www/small"
    ' && exec python3 -c "$BENCH_SERVER" /tmp/www'
)
# (name, the session port, the bumping port, drop the guard's lines?)
VARIANTS = (("with", 8897, 8907, False), ("without", 8898, 8908, True))
CLIENT = """
import http.client, sys, time
port, host, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
def one():
    conn.request("GET", f"http://{host}/small")
    response = conn.getresponse()
    response.read()
    if response.status != 200:
        raise SystemExit(f"status {response.status}")
one()
began = time.perf_counter()
for _ in range(count):
    one()
print((time.perf_counter() - began) / count)
"""


def squid_variant(name: str, port: int, bump: int, drop_guard: bool) -> str:
    """A shell command writing the companion's squid.conf with other ports (and,
    for "without", no guard), then running that squid in the foreground."""
    conf, edits = (
        f"/run/cage/bench-{name}.conf",
        [
            f"s/127.0.0.1:8888/127.0.0.1:{port}/",
            f"s/127.0.0.1:8889 /127.0.0.1:{bump} /",
            f"s#/run/cage/squid.pid#/run/cage/bench-{name}.pid#",
            "s#stdio:/dev/stdout#stdio:/dev/null#",
            "s#^cache_log .*#cache_log /dev/null#",
        ],
    )
    if drop_guard:
        edits.append("/^http_access deny .* cage_blocked_dst$/d")
    sed = " ".join(f"-e '{e}'" for e in edits)
    return f"sed {sed} /etc/cage/squid.conf > {conf} && exec squid -N -f {conf}"


def run(ctx) -> SectionResult:
    result = SectionResult(NAME, TITLE)
    env = ctx.ws.cage_env("guard")
    cfg = ctx.config(env)
    session, host = ctx.ws.session_name("guard"), f"guard-{ctx.ws.run_id}.test"
    ctx.start(env, session, "--network", "filtered", "--no-persist", "--allow-host", host)
    server = ctx.ws.unique("guard-host")
    code = (ctx.bench_dir / "http_server.py").read_text()
    argv = [ctx.docker, "run", "-d", "--name", server, "--label", ctx.ws.label]
    argv += ["--network", cfg["egress_network"], "--network-alias", host, "--user", "0"]
    argv += ["--env", f"BENCH_SERVER={code}", "--entrypoint", "sh"]
    run_cmd([*argv, cfg["image_companion"], "-c", SERVE])
    companion = f"companion-cage-{session}"
    for name, port, bump, drop in VARIANTS:
        script = squid_variant(name, port, bump, drop)
        run_cmd([ctx.docker, "exec", "-d", companion, "sh", "-c", script])
    confs = ["/run/cage/bench-with.conf", "/run/cage/bench-without.conf"]
    guard_lines = "^http_access deny .* cage_blocked_dst$"
    dropped = run_cmd([ctx.docker, "exec", companion, "grep", "-c", guard_lines, *confs])
    if "bench-with.conf:2" not in dropped or "bench-without.conf:0" not in dropped:
        raise BenchError(f"the variants' guard lines are not as planned: {dropped}")

    def per_request(port: int, count: int = REQUESTS) -> float:
        argv = [ctx.docker, "exec", "-i", companion, "python3", "-", str(port), host, str(count)]
        return float(json.loads(run_cmd(argv, input=CLIENT)))

    for _, port, _, _ in VARIANTS:
        wait_for_host(lambda p=port: per_request(p, 1))
    samples = paired(
        {
            "GET through squid, with the guard": lambda: per_request(VARIANTS[0][1]),
            "GET through squid, without the guard": lambda: per_request(VARIANTS[1][1]),
        },
        max(5, ctx.reps),
    )
    for label, values in samples.items():
        result.rows.append(Row(NAME, label, values, unit="µs/request", scale=1e6))
    with_guard, without = samples.values()
    result.ratios.append(
        Ratio(NAME, "with the guard", "without the guard", paired_ratios(with_guard, without))
    )
    result.notes.append(
        f"Each sample: the mean time of {REQUESTS} sequential GETs of 1 KiB on one kept-alive "
        "connection to squid, timed by a Python client inside the companion (so the "
        "session's bridges are not in it). Both squids run in the same companion (0.5 CPU) "
        "from its own squid.conf with other ports; 'without' lacks only the guard's two "
        f"http_access lines. The guard's list here: the egress network's subnet allowed "
        f"({env['CAGE_ALLOWED_ADDRESS_RANGES']}), so it holds the other ranges cut around it."
    )
    return result
