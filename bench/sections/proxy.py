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

from claude_cage.policy import SOCK_DIR

NAME = "proxy"
TITLE = "proxy overhead (egress)"
REQUESTS = 200
DOWNLOAD_MB = 100
MIB = 2**20
NODELAY_PORT = 3129
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
    direct_argv += ["--network", network, "--entrypoint", "sleep"]
    run_cmd([*direct_argv, cfg["image_cli"], "infinity"])
    script = (ctx.bench_dir / "http_client.js").read_text()

    def client(container: str, mode: str, path: str, count: int = 1, proxy: str = "") -> dict:
        argv = [ctx.docker, "exec", "-i", *(["--env", f"HTTP_PROXY={proxy}"] if proxy else [])]
        argv += [container, "node", "-", mode, f"http://{host}{path}", str(count)]
        return json.loads(run_cmd(argv, input=script))

    wait_for_host(lambda: client(direct, "rps", "/small", 1))
    client(f"cage-{session}", "rps", "/small", 1)  # fails here if the proxy refuses
    nodelay = start_nodelay_bridge(ctx, f"cage-{session}")
    wait_for_host(lambda: client(f"cage-{session}", "rps", "/small", 1, nodelay))

    def rps(container: str, proxy: str = "") -> float:
        data = client(container, "rps", "/small", REQUESTS, proxy)
        return data["requests"] / data["seconds"]

    def download(container: str, proxy: str = "") -> float:
        data = client(container, "download", "/big", 1, proxy)
        if data["bytes"] != DOWNLOAD_MB * MIB:
            raise BenchError(f"downloaded {data['bytes']} bytes, not {DOWNLOAD_MB} MiB")
        return data["bytes"] / data["seconds"]

    reps = max(3, ctx.reps // 2)
    for metric, measure, unit, scale in (
        ("requests/s", rps, "req/s", 1.0),
        (f"{DOWNLOAD_MB} MiB download", download, "MiB/s", 1 / MIB),
    ):
        runs = {
            f"{metric} through proxy": lambda m=measure: m(f"cage-{session}"),
            f"{metric} direct": lambda m=measure: m(direct),
        }
        if measure is rps:
            runs[f"{metric} through proxy, bridge with nodelay"] = lambda: rps(
                f"cage-{session}", nodelay
            )
        samples = paired(runs, reps)
        for label, values in samples.items():
            result.rows.append(Row(NAME, label, values, unit=unit, scale=scale))
        straight = samples[f"{metric} direct"]
        for label in samples:
            if label != f"{metric} direct":
                values = paired_ratios(samples[label], straight)
                result.ratios.append(Ratio(NAME, label, f"{metric} direct", values))
    result.notes.append(
        f"requests/s: {REQUESTS} sequential GETs of a 1 KiB file on one kept-alive connection "
        f"(node http.Agent), timed inside the container. Download: one {DOWNLOAD_MB} MiB file. "
        "Higher is better; the ratio is proxy / direct. The companion (squid) is limited to "
        "0.5 CPU by the policy; the direct container has no limits."
    )
    result.notes.append(
        "Diagnostic row (bridge with nodelay): the same session, through a second loopback "
        f"bridge the benchmark starts in it on port {NODELAY_PORT}, identical to the "
        "entrypoint's proxy bridge but with socat's `nodelay` option (TCP_NODELAY)."
    )
    return result


def start_nodelay_bridge(ctx, container: str) -> str:
    """Start the session's proxy bridge again on another port, with TCP_NODELAY."""
    env = ctx.inspect(container)["Config"]["Env"]
    bridges = next(e for e in env if e.startswith("CAGE_BRIDGES=")).split("=", 1)[1]
    sock = next(b for b in bridges.split() if b.endswith("proxy.sock")).split(":")[2]
    listen = f"TCP-LISTEN:{NODELAY_PORT},bind=127.0.0.1,fork,reuseaddr,nodelay"
    connect = f"UNIX-CONNECT:{SOCK_DIR}/out/{sock}"
    run_cmd([ctx.docker, "exec", "-d", container, "socat", listen, connect])
    return f"http://127.0.0.1:{NODELAY_PORT}"


def wait_for_host(probe, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            probe()
            return
        except BenchError as exc:
            if time.monotonic() > deadline or "is not running" in str(exc):
                raise
            time.sleep(0.2)
