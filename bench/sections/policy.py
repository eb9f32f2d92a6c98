"""The egress policy: the latency the proxy adds to one HTTPS request, per path.

One test host (bench/http_server.py, a certificate from a CA of this run for three
names) joins the egress network as `tun-<id>.test`, `cred-<id>.test` and
`rule-<id>.test`. One filtered session reaches it by each name:

- tunnel: an allowlisted host, a plain CONNECT tunnel (the session trusts the run's CA);
- credential: a host with a credential (`secret set --session`): TLS ends in the
  companion, which adds the header and verifies the host itself;
- method rules: a host a policy rule allows for GET only (docs/policy.md): TLS ends in
  the companion, which decides each request by its method and path.

A Python client in the session makes sequential GETs of 1 KiB, each on a new connection
(CONNECT, TLS handshake(s), request), through the session's proxy; the floor is the same
client in a plain container of the same image on the egress network, with no proxy.
"""

from __future__ import annotations

import json

from harness import Ratio, Row, SectionResult, paired_ratios
from harness import run as run_cmd

from sections.credentials import make_pki

NAME = "policy"
TITLE = "egress policy: latency the proxy adds to one HTTPS request (p50, p99)"
REQUESTS = 100
SERVE = (
    "mkdir -p /tmp/www && head -c 1024 /dev/zero > /tmp/www/small"
    ' && exec python3 -c "$BENCH_SERVER" /tmp/www /tls/cert.pem /tls/key.pem'
)
CLIENT = """
import json, ssl, sys, time, urllib.request
url, count, cafile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
context = ssl.create_default_context(cafile=cafile)
opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))
times = []
for _ in range(count + 1):
    began = time.perf_counter()
    with opener.open(url, timeout=10) as response:
        response.read()
    times.append(time.perf_counter() - began)
times = sorted(times[1:])
print(json.dumps({"p50": times[len(times) // 2], "p99": times[int(len(times) * 0.99) - 1]}))
"""


def run(ctx) -> SectionResult:
    result = SectionResult(NAME, TITLE)
    tunnel, cred, rule = (f"{p}-{ctx.ws.run_id}.test" for p in ("tun", "cred", "rule"))
    pki = ctx.ws.root / "policy-pki"
    make_pki(pki, tunnel, (cred, rule))
    env = ctx.ws.cage_env("policy")
    env["CAGE_UPSTREAM_CA_CERTS"] = str(pki / "ca.pem")
    (ctx.ws.root / "policy" / "config" / "policy.yaml").write_text(
        f"version: 1\nrules:\n  - {{action: allow, host: {rule}, methods: [GET, HEAD]}}\n"
    )
    cfg = ctx.config(env)
    server = ctx.ws.unique("policy-host")
    code = (ctx.bench_dir / "http_server.py").read_text()
    argv = [ctx.docker, "run", "-d", "--name", server, "--label", ctx.ws.label]
    argv += ["--network", cfg["egress_network"], "--user", "0"]
    argv += [f"--network-alias={h}" for h in (tunnel, cred, rule)]
    argv += ["-v", f"{pki}:/tls:ro", "--env", f"BENCH_SERVER={code}", "--entrypoint", "sh"]
    run_cmd([*argv, cfg["image_companion"], "-c", SERVE])
    session = ctx.ws.session_name("policy")
    ctx.start(env, session, "--network", "filtered", "--no-persist",
              "--allow-host", tunnel, "--allow-host", cred)  # fmt: skip
    secret = ["secret", "set", "bench", "--session", session, "--host", cred, "--kind", "header"]
    run_cmd([ctx.cage, *secret, "--header", "X-Bench-Token"], env, input="bench-token")
    floor = ctx.ws.unique("policy-floor")
    # The floor looks no name up (squid, in the session's path, answers from its cache).
    fmt = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
    address = run_cmd([ctx.docker, "inspect", "-f", fmt, server]).strip()
    argv = [ctx.docker, "run", "-d", "--name", floor, "--label", ctx.ws.label]
    argv += ["--network", cfg["egress_network"], "--add-host", f"{tunnel}:{address}"]
    argv += ["--entrypoint", "sleep"]
    run_cmd([*argv, cfg["image_cli"], "infinity"])
    ca = (pki / "ca.pem").read_text()
    inside = f"cage-{session}"
    for container in (inside, floor):
        run_cmd([ctx.docker, "exec", "-i", container, "sh", "-c", "cat > /tmp/ca.pem"], input=ca)
    # the session trusts the run's CA (tunnel) and its own (the two it decrypts)
    bundle = "cat /tmp/ca.pem /sock/out/ca-bundle.pem > /tmp/both.pem"
    run_cmd([ctx.docker, "exec", inside, "sh", "-c", bundle])

    def measure(container: str, host: str, cafile: str) -> dict[str, float]:
        argv = [ctx.docker, "exec", "-i", container, "python3", "-"]
        out = run_cmd([*argv, f"https://{host}/small", str(REQUESTS), cafile], input=CLIENT)
        return json.loads(out)  # type: ignore[no-any-return]

    paths = {
        "tunnel": (inside, tunnel, "/tmp/both.pem"),
        "credential (TLS ended)": (inside, cred, "/tmp/both.pem"),
        "method rules (TLS ended)": (inside, rule, "/tmp/both.pem"),
        "no proxy": (floor, tunnel, "/tmp/ca.pem"),
    }
    for args in paths.values():  # fails here if a path does not work; warms the caches
        measure(*args)
    samples: dict[str, dict[str, list[float]]] = {k: {"p50": [], "p99": []} for k in paths}
    order = list(paths)
    for rep in range(max(3, ctx.reps // 2)):
        for key in order[rep % len(order) :] + order[: rep % len(order)]:
            for stat, value in measure(*paths[key]).items():
                samples[key][stat].append(value)
    for key in paths:
        for stat in ("p50", "p99"):
            label = f"one HTTPS request, {stat}: {key}"
            result.rows.append(Row(NAME, label, samples[key][stat], unit="ms", scale=1000.0))
    floor_label = "one HTTPS request, p50: no proxy"
    for key in order[:3]:
        label = f"one HTTPS request, p50: {key}"
        ratio = paired_ratios(samples[key]["p50"], samples["no proxy"]["p50"])
        result.ratios.append(Ratio(NAME, label, floor_label, ratio))
        pairs = zip(samples[key]["p50"], samples["no proxy"]["p50"], strict=True)
        added = [a - b for a, b in pairs]
        label = f"added by the proxy, p50: {key}"
        result.rows.append(Row(NAME, label, added, unit="ms", scale=1000.0))
    result.notes.append(
        f"Each sample: {REQUESTS} sequential GETs of 1 KiB, each on a new connection, by "
        "Python's urllib (one warm-up request first); p50 and p99 of those, then the "
        "median over repetitions (paths rotated every repetition). Inside the session the "
        "request goes through its proxy bridge (a unix socket) to squid in the companion "
        "(0.5 CPU); 'no proxy' is the same client in a plain container on the egress "
        "network, with the host's address in /etc/hosts (no DNS lookup). 'Added' is the "
        "paired difference of the p50s. Where TLS ends in the "
        "companion it makes a second handshake to the host and signs a certificate for it "
        "(cached after the first)."
    )
    return result
