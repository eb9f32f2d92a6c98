"""Credentials added outside the sandbox: what terminating TLS costs, and what a start
with credentials costs.

A test host (bench/http_server.py with a certificate from a CA of this run) joins the
egress network as `cred-<id>.test`. Two filtered sessions reach it over HTTPS:

- with a credential for the host (`secret set --session`): the companion's squid
  terminates TLS with the session's CA, adds the header, and opens its own TLS
  connection to the host, which it verifies against the run's CA (upstream_ca_certs);
- without one: a plain CONNECT tunnel, the floor; the client trusts the run's CA itself.

The same curl runs in both: one request on a new connection (TLS handshakes included),
200 requests on one kept-alive connection, and a 100 MiB download. Then `start
--detach` of a filtered session with an API key against one without.
"""

from __future__ import annotations

import subprocess

from harness import Ratio, Row, SectionResult, paired, paired_ratios, timed
from harness import run as run_cmd

NAME = "credentials"
TITLE = "credentials: the TLS-terminating path against the plain tunnel"
REQUESTS = 200
DOWNLOAD_MB = 100
MIB = 2**20
SERVE = (
    f"mkdir -p /tmp/www && head -c {DOWNLOAD_MB}M /dev/zero > /tmp/www/big"
    " && head -c 1024 /dev/zero > /tmp/www/small"
    ' && exec python3 -c "$BENCH_SERVER" /tmp/www /tls/cert.pem /tls/key.pem'
)


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], capture_output=True, check=True)


def make_pki(directory, host: str, more: tuple[str, ...] = ()) -> None:
    """A CA of this run, and a certificate it signs for `host` (and `more` names)."""
    directory.mkdir(parents=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", "-new", *ec, "-keyout", str(directory / "ca.key"),
             "-out", str(directory / "ca.pem"), "-days", "2", "-subj", "/CN=bench CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    names = ",".join(f"DNS:{h}" for h in (host, *more))
    (directory / "ext").write_text(f"subjectAltName={names}\nextendedKeyUsage=serverAuth\n")
    _openssl("req", "-new", *ec, "-keyout", str(directory / "key.pem"),
             "-out", str(directory / "req.csr"), "-subj", f"/CN={host}")  # fmt: skip
    _openssl("x509", "-req", "-in", str(directory / "req.csr"), "-CA", str(directory / "ca.pem"),
             "-CAkey", str(directory / "ca.key"), "-CAcreateserial", "-days", "2",
             "-out", str(directory / "cert.pem"), "-extfile", str(directory / "ext"))  # fmt: skip
    for path in (directory, *directory.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)


def run(ctx) -> SectionResult:
    result = SectionResult(NAME, TITLE)
    host = f"cred-{ctx.ws.run_id}.test"
    pki = ctx.ws.root / "credentials-pki"
    make_pki(pki, host)
    env = ctx.ws.cage_env("credentials")
    env["CAGE_UPSTREAM_CA_CERTS"] = str(pki / "ca.pem")
    cfg = ctx.config(env)
    server = ctx.ws.unique("tls")
    code = (ctx.bench_dir / "http_server.py").read_text()
    argv = [ctx.docker, "run", "-d", "--name", server, "--label", ctx.ws.label]
    argv += ["--network", cfg["egress_network"], "--network-alias", host, "--user", "0"]
    argv += ["-v", f"{pki}:/tls:ro", "--env", f"BENCH_SERVER={code}", "--entrypoint", "sh"]
    run_cmd([*argv, cfg["image_companion"], "-c", SERVE])

    bumped, tunnel = ctx.ws.session_name("bump"), ctx.ws.session_name("tunnel")
    for session in (bumped, tunnel):
        ctx.start(env, session, "--network", "filtered", "--no-persist", "--allow-host", host)
    secret = ["secret", "set", "bench", "--session", bumped, "--host", host, "--kind", "header"]
    run_cmd([ctx.cage, *secret, "--header", "X-Bench-Token"], env, input="bench-token")
    # The tunnel's client trusts the run's CA itself (the companion does not touch it).
    ca = (pki / "ca.pem").read_text()
    run_cmd([ctx.docker, "exec", "-i", f"cage-{tunnel}", "sh", "-c", "cat > /tmp/ca.pem"],
            input=ca)  # fmt: skip
    trust = {bumped: "", tunnel: "--cacert /tmp/ca.pem"}

    def curl(session: str, args: str) -> str:
        script = f"curl -sS --fail {trust[session]} {args}"
        return run_cmd([ctx.docker, "exec", f"cage-{session}", "sh", "-c", script])

    for session in (bumped, tunnel):  # fails here if a path does not work
        curl(session, f"-o /dev/null https://{host}/small")

    def first(session: str) -> float:
        out = curl(session, f"-o /dev/null -w '%{{time_total}}' https://{host}/small")
        return float(out)

    urls = " ".join([f"-o /dev/null https://{host}/small"] * REQUESTS)

    def rps(session: str) -> float:
        out = curl(session, f"-w '%{{time_total}}\\n' {urls}")
        return REQUESTS / sum(float(t) for t in out.split())

    def download(session: str) -> float:
        out = curl(session, f"-o /dev/null -w '%{{speed_download}}' https://{host}/big")
        return float(out)

    reps = max(3, ctx.reps // 2)
    for metric, measure, unit, scale in (
        ("one request, new connection", first, "ms", 1000.0),
        (f"requests/s ({REQUESTS}, kept alive)", rps, "req/s", 1.0),
        (f"{DOWNLOAD_MB} MiB download", download, "MiB/s", 1 / MIB),
    ):
        runs = {
            f"{metric}: with a credential (TLS terminated)": lambda m=measure: m(bumped),
            f"{metric}: plain tunnel": lambda m=measure: m(tunnel),
        }
        samples = paired(runs, reps)
        labels = list(samples)
        for label in labels:
            result.rows.append(Row(NAME, label, samples[label], unit=unit, scale=scale))
        values = paired_ratios(samples[labels[0]], samples[labels[1]])
        result.ratios.append(Ratio(NAME, labels[0], labels[1], values))

    def start(with_key: bool) -> float:
        name = ctx.ws.session_name("k" if with_key else "n")
        extra = {"ANTHROPIC_API_KEY": "sk-ant-api03-bench-0123456789"} if with_key else {}
        seconds = timed([ctx.cage, "start", "--detach", "--name", name, "--no-persist"],
                        {**env, **extra})  # fmt: skip
        ctx.destroy(env, name)
        return seconds

    samples = paired({"start, filtered, with an API key": lambda: start(True),
                      "start, filtered, no credential": lambda: start(False)}, reps)  # fmt: skip
    labels = list(samples)
    for label in labels:
        result.rows.append(Row(NAME, label, samples[label], unit="ms", scale=1000.0))
    values = paired_ratios(samples[labels[0]], samples[labels[1]])
    result.ratios.append(Ratio(NAME, labels[0], labels[1], values))
    result.notes.append(
        "curl inside each session, through its proxy bridge. 'New connection' is one "
        "request's time_total: CONNECT, TLS handshake(s), request. With a credential the "
        "companion makes a second handshake to the server and signs a certificate for the "
        "host (cached after the first). Ratios: with a credential / plain tunnel (for "
        "req/s and MiB/s, below 1 is slower; for ms, above 1 is slower). Start: the "
        "companion makes the session's CA in both; with a key it also waits for the "
        "credential before squid starts."
    )
    return result
