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

from harness import BenchError, Ratio, Row, SectionResult, paired_ratios
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
import http.client, json, statistics, sys, time
ports, host, count = sys.argv[1].split(","), sys.argv[2], int(sys.argv[3])
conns = [http.client.HTTPConnection("127.0.0.1", int(p), timeout=10) for p in ports]
def one(conn):
    began = time.perf_counter()
    conn.request("GET", f"http://{host}/small")
    response = conn.getresponse()
    response.read()
    if response.status != 200:
        raise SystemExit(f"status {response.status}")
    return time.perf_counter() - began
for conn in conns:
    one(conn)
times = [[], []]
for i in range(count):  # the two squids in turn, the order swapped every pair
    for k in ((0, 1) if i % 2 else (1, 0)):
        times[k].append(one(conns[k]))
print(json.dumps({
    "with": statistics.median(times[0]),
    "without": statistics.median(times[1]),
    "cost": statistics.median(a - b for a, b in zip(*times)),
}))
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

    def pairs(count: int = REQUESTS) -> dict[str, float]:
        ports = ",".join(str(port) for _, port, _, _ in VARIANTS)
        argv = [ctx.docker, "exec", "-i", companion, "python3", "-", ports, host, str(count)]
        return json.loads(run_cmd(argv, input=CLIENT))  # type: ignore[no-any-return]

    wait_for_host(lambda: pairs(1))
    pairs()  # warm-up
    samples: dict[str, list[float]] = {"with": [], "without": [], "cost": []}
    for _ in range(max(5, ctx.reps)):
        for key, value in pairs().items():
            samples[key].append(value)
    labels = {
        "with": "GET through squid, with the guard",
        "without": "GET through squid, without the guard",
        "cost": "the guard's cost per request (paired difference)",
    }
    for key, label in labels.items():
        result.rows.append(Row(NAME, label, samples[key], unit="µs", scale=1e6))
    result.ratios.append(
        Ratio(
            NAME,
            labels["with"],
            labels["without"],
            paired_ratios(samples["with"], samples["without"]),
        )
    )
    result.notes.append(
        f"Each sample: {REQUESTS} pairs of GETs of 1 KiB, one through each squid in turn "
        "(order swapped every pair), each squid on its own kept-alive connection, timed by a "
        "Python client inside the companion (so the session's bridges are not in it); the "
        "rows are medians of the per-request times and of the per-pair differences. Both "
        "squids run in the same companion (0.5 CPU) from its own squid.conf with other "
        "ports; 'without' lacks only the guard's two "
        f"http_access lines. The guard's list here: the egress network's subnet allowed "
        f"({env['CAGE_ALLOWED_ADDRESS_RANGES']}), so it holds the other ranges cut around it."
    )
    return result
