"""A certificate authority of one benchmark run, and a certificate it signs for
api.anthropic.com: what the scripted model server on the egress network serves with
(the sessions trust the CA through CAGE_UPSTREAM_CA_CERTS)."""

from __future__ import annotations

from pathlib import Path

from harness import run as run_cmd


def make_tls(root: Path) -> tuple[Path, Path]:
    """A CA of this run, and a certificate it signs for api.anthropic.com: (ca.pem, dir)."""
    root.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run_cmd(
        ["openssl", "req", "-x509", "-new", *ec, "-keyout", str(root / "ca.key"),
         "-out", str(root / "ca.pem"), "-days", "1", "-subj", "/CN=claude-cage bench CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"]
    )  # fmt: skip
    (root / "ext").write_text(
        "subjectAltName=DNS:api.anthropic.com\nbasicConstraints=CA:FALSE\n"
        "extendedKeyUsage=serverAuth\n"
    )
    run_cmd(
        ["openssl", "req", "-new", *ec, "-keyout", str(root / "key.pem"),
         "-out", str(root / "req.csr"), "-subj", "/CN=api.anthropic.com"]
    )  # fmt: skip
    run_cmd(
        ["openssl", "x509", "-req", "-in", str(root / "req.csr"), "-CA", str(root / "ca.pem"),
         "-CAkey", str(root / "ca.key"), "-CAcreateserial", "-days", "1",
         "-out", str(root / "cert.pem"), "-extfile", str(root / "ext")]
    )  # fmt: skip
    for path in (root, *root.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return root / "ca.pem", root
