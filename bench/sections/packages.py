"""Installing a project's packages through the proxy, against the same install with no
proxy at all.

A static package index of this run (tests/integration/registry_server.py, with wheels
`pip download`ed on this machine and a certificate from a CA of this run) joins the
egress network as pypi.org and files.pythonhosted.org. The same `pip install` of a few
packages, from a fresh target directory and with no cache, runs in:

- a filtered session started with `--allow-preset python` only: pip goes through the
  session's proxy bridge and the companion's squid, which decrypts the preset's hosts
  (GET and HEAD rules) and verifies the index against the run's CA;
- a plain container of the same image on the egress network, with the session's CPU
  limit and no proxy: the floor.

The session's pip trusts the session's CA (its environment, as in every session); the
companion trusts the run's CA (CAGE_UPSTREAM_CA_CERTS); the floor's pip trusts it
through REQUESTS_CA_BUNDLE.
"""

from __future__ import annotations

from harness import BenchError, Ratio, Row, SectionResult, paired, paired_ratios, timed
from harness import run as run_cmd

NAME = "packages"
TITLE = "packages: pip install through the proxy against no proxy"
PACKAGES = ("pytest==8.3.4", "pluggy==1.5.0", "iniconfig==2.0.0", "packaging==24.2")
HOSTS = ("pypi.org", "files.pythonhosted.org")
INSTALL = (
    "rm -rf /tmp/target && /tmp/venv/bin/python -m pip install -q --no-cache-dir"
    " --disable-pip-version-check --target /tmp/target " + " ".join(PACKAGES)
)


def make_index(ctx, root) -> None:
    """/simple/<project>/ pages linking to the wheels on files.pythonhosted.org."""
    import hashlib

    wheels = root / "packages"
    wheels.mkdir(parents=True)
    run_cmd([ctx.python, "-m", "pip", "download", "-q", "--no-deps", "-d", str(wheels),
             *PACKAGES])  # fmt: skip
    for wheel in wheels.iterdir():
        sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
        project = wheel.name.split("-")[0].lower().replace("_", "-")
        page = root / "simple" / project
        page.mkdir(parents=True, exist_ok=True)
        url = f"https://files.pythonhosted.org/packages/{wheel.name}#sha256={sha}"
        (page / "index.html").write_text(f'<a href="{url}">{wheel.name}</a>')
    for path in (root, *root.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)


def run(ctx) -> SectionResult:
    from sections.credentials import make_pki

    result = SectionResult(NAME, TITLE)
    pki = ctx.ws.root / "packages-pki"
    make_pki(pki, HOSTS[0])
    # make_pki signs for one name; sign the file host too, with the same CA
    (pki / "ext").write_text(
        "subjectAltName=" + ",".join(f"DNS:{h}" for h in HOSTS) + "\nextendedKeyUsage=serverAuth\n"
    )
    run_cmd(["openssl", "x509", "-req", "-in", str(pki / "req.csr"), "-CA", str(pki / "ca.pem"),
             "-CAkey", str(pki / "ca.key"), "-CAcreateserial", "-days", "2",
             "-out", str(pki / "cert.pem"), "-extfile", str(pki / "ext")])  # fmt: skip
    (pki / "cert.pem").chmod(0o644)
    root = ctx.ws.root / "packages-index"
    make_index(ctx, root)
    env = ctx.ws.cage_env("packages")
    env["CAGE_UPSTREAM_CA_CERTS"] = str(pki / "ca.pem")
    cfg = ctx.config(env)
    server = ctx.ws.unique("index")
    script = ctx.bench_dir.parent / "tests" / "integration" / "registry_server.py"
    argv = [ctx.docker, "run", "-d", "--name", server, "--label", ctx.ws.label, "--user", "0"]
    argv += ["--network", cfg["egress_network"], *(f"--network-alias={h}" for h in HOSTS)]
    argv += ["-v", f"{script}:/server.py:ro", "-v", f"{root}:/srv/root:ro"]
    argv += ["-v", f"{pki}:/tls:ro", "--entrypoint", "python3", cfg["image_companion"]]
    run_cmd([*argv, "/server.py", "/srv/root", "/tls/cert.pem", "/tls/key.pem"])

    ca = (pki / "ca.pem").read_text()
    session = ctx.ws.session_name("pip")
    ctx.start(env, session, "--network", "filtered", "--no-persist",
              "--allow-preset", "python")  # fmt: skip
    plain = ctx.ws.unique("plain")
    run_cmd([ctx.docker, "run", "-d", "--name", plain, "--label", ctx.ws.label,
             "--network", cfg["egress_network"], "--cpus", str(cfg["cpus"]),
             "--env", "REQUESTS_CA_BUNDLE=/tmp/ca.pem", "--entrypoint", "sleep",
             cfg["image_cli"], "infinity"])  # fmt: skip
    containers = {"through the proxy (filtered session)": f"cage-{session}", "no proxy": plain}
    for container in containers.values():
        run_cmd([ctx.docker, "exec", "-i", container, "sh", "-c", "cat > /tmp/ca.pem"], input=ca)
        run_cmd([ctx.docker, "exec", container, "python3", "-m", "venv", "/tmp/venv"])
    proxied = run_cmd([ctx.docker, "exec", f"cage-{session}", "sh", "-c", "echo $HTTPS_PROXY"])
    if not proxied.strip():
        raise BenchError("the session has no HTTPS_PROXY: not a filtered session")

    def install(container: str) -> float:
        return timed([ctx.docker, "exec", container, "sh", "-c", INSTALL])

    runs = {f"pip install {len(PACKAGES)} wheels: {label}": (lambda c=c: install(c))
            for label, c in containers.items()}  # fmt: skip
    samples = paired(runs, max(3, ctx.reps // 2))
    labels = list(samples)
    for label in labels:
        result.rows.append(Row(NAME, label, samples[label], unit="ms", scale=1000.0))
    values = paired_ratios(samples[labels[0]], samples[labels[1]])
    result.ratios.append(Ratio(NAME, labels[0], labels[1], values))
    result.notes.append(
        "Each install: a fresh --target directory, --no-cache-dir, four wheels (pytest "
        "and its dependencies, about 0.5 MB) and four index pages, over HTTPS; timed as a "
        "whole `docker exec`, pip's own start-up included, which both sides pay alike."
    )
    return result
