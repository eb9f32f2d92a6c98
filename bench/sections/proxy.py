"""Proxy overhead: requests per second and a 100 MB download, through the proxy and direct.

A test host (bench/http_server.py in the companion image) joins the egress network
under a name of this run, `bench-<id>.test`; a filtered session is started with
`--allow-host` for it. The same node client (bench/http_client.js) then runs:

- through the proxy: inside the session, which reaches the host only via its
  loopback proxy (socat -> unix socket -> companion socat -> squid);
- direct: inside a container of the session image on the egress network itself.

Both use one kept-alive connection. All traffic stays between these containers.
"""

from __future__ import annotations

import json
import time

from harness import BenchError, Ratio, Row, SectionResult, paired, paired_ratios
from harness import run as run_cmd

NAME = "proxy"
TITLE = "proxy overhead (egress)"
REQUESTS = 200
DOWNLOAD_MB = 100
MIB = 2**20
SERVE = (
    f"mkdir -p /tmp/www && head -c {DOWNLOAD_MB}M /dev/zero > /tmp/www/big"
    ' && head -c 1024 /dev/zero > /tmp/www/small && exec python3 -c "$BENCH_SERVER" /tmp/www'
)


def run(ctx) -> SectionResult:
    result = SectionResult(NAME, TITLE)
    env = ctx.ws.cage_env("proxy")
    cfg = ctx.config(env)
    session, host = ctx.ws.session_name("px"), f"bench-{ctx.ws.run_id}.test"
    ctx.start(env, session, "--network", "filtered", "--no-persist", "--allow-host", host)
    network = cfg["egress_network"]
    server, direct = ctx.ws.unique("host"), ctx.ws.unique("direct")
    code = (ctx.bench_dir / "http_server.py").read_text()
    server_argv = [ctx.docker, "run", "-d", "--name", server, "--label", ctx.ws.label]
    server_argv += ["--network", network, "--network-alias", host, "--user", "0"]
    server_argv += ["--env", f"BENCH_SERVER={code}", "--entrypoint", "sh"]
    run_cmd([*server_argv, cfg["image_companion"], "-c", SERVE])
    direct_argv = [ctx.docker, "run", "-d", "--name", direct, "--label", ctx.ws.label]
    run_cmd([*direct_argv, "--network", network, cfg["image_cli"], "sleep", "infinity"])
    script = (ctx.bench_dir / "http_client.js").read_text()

    def client(container: str, mode: str, path: str, count: int = 1) -> dict:
        argv = [ctx.docker, "exec", "-i", container, "node", "-"]
        out = run_cmd([*argv, mode, f"http://{host}{path}", str(count)], input=script)
        return json.loads(out)

    wait_for_host(lambda: client(direct, "rps", "/small", 1))
    client(f"cage-{session}", "rps", "/small", 1)  # fails here if the proxy refuses

    def rps(container: str) -> float:
        data = client(container, "rps", "/small", REQUESTS)
        return data["requests"] / data["seconds"]

    def download(container: str) -> float:
        data = client(container, "download", "/big")
        if data["bytes"] != DOWNLOAD_MB * MIB:
            raise BenchError(f"downloaded {data['bytes']} bytes, not {DOWNLOAD_MB} MiB")
        return data["bytes"] / data["seconds"]

    reps = max(3, ctx.reps // 2)
    for metric, measure, unit, scale in (
        ("requests/s", rps, "req/s", 1.0),
        (f"{DOWNLOAD_MB} MiB download", download, "MiB/s", 1 / MIB),
    ):
        samples = paired(
            {
                f"{metric} through proxy": lambda m=measure: m(f"cage-{session}"),
                f"{metric} direct": lambda m=measure: m(direct),
            },
            reps,
        )
        through, straight = samples.values()
        for label, values in samples.items():
            result.rows.append(Row(NAME, label, values, unit=unit, scale=scale))
        result.ratios.append(
            Ratio(
                NAME,
                f"{metric} through proxy",
                f"{metric} direct",
                paired_ratios(through, straight),
            )
        )
    result.notes.append(
        f"requests/s: {REQUESTS} sequential GETs of a 1 KiB file on one kept-alive connection "
        f"(node http.Agent), timed inside the container. Download: one {DOWNLOAD_MB} MiB file. "
        "Higher is better; the ratio is proxy / direct. The companion (squid) is limited to "
        "0.5 CPU by the policy; the direct container has no limits."
    )
    return result


def wait_for_host(probe, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            probe()
            return
        except BenchError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
