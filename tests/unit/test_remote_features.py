"""Remote dev container features: the reference, the registry client's checks
(token, digests, sizes, errors), the tar safety, and the cache by digest. The
registry is tests/oci_registry.py, in this process, over plain HTTP on 127.0.0.1."""

from __future__ import annotations

import io
import json
import tarfile
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from claude_cage import devcontainer, ociclient, safetar
from claude_cage.config import VALIDATORS
from claude_cage.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_NOT_FOUND, BadInput, CageError
from claude_cage.operations.remote_features import Fetcher, cache_dir
from tests.oci_registry import Registry, feature_tar

FEATURE = {
    "devcontainer-feature.json": json.dumps(
        {"id": "hello", "options": {"greeting": {"type": "string", "default": "hi"}}}
    ),
    "install.sh": '#!/bin/sh\necho "$GREETING" > /opt/hello\n',
}


@pytest.fixture
def registry() -> Iterator[Registry]:
    with Registry() as running:
        yield running


def fetcher(registry: Registry, data: Path) -> Fetcher:
    return Fetcher(data, {registry.host: registry.url}, timeout=5)


# --- references ---------------------------------------------------------------------------


def test_references_parse_as_the_spec_reads_them() -> None:
    ref = ociclient.parse_reference("ghcr.io/devcontainers/features/node:1")
    assert (ref.registry, ref.path, ref.tag, ref.digest) == (
        "ghcr.io", "devcontainers/features/node", "1", None,
    )  # fmt: skip
    assert ociclient.parse_reference("ghcr.io/o/features/go").tag == "latest"
    ported = ociclient.parse_reference("localhost:5000/o/f/x:2.0")
    assert ported.registry == "localhost:5000" and ported.tag == "2.0"
    pin = "sha256:" + "a" * 64
    pinned = ociclient.parse_reference(f"ghcr.io/o/f/x@{pin}")
    assert pinned.digest == pin and pinned.tag is None and pinned.version == pin
    for bad in ("ghcr.io/x", "ghcr.io/o/f/x@sha256:zz", "nohost/o/f", "ghcr.io/O/../x:1"):
        with pytest.raises(BadInput):
            ociclient.parse_reference(bad)


# --- tar safety ---------------------------------------------------------------------------


def attack_tar(*members: tuple[str, str, str]) -> bytes:
    """A tarball of (kind, name, content or link target) members."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for kind, name, value in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(value)
                tar.addfile(info, io.BytesIO(value.encode()))
                continue
            info.type = {"sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE,
                         "dir": tarfile.DIRTYPE, "dev": tarfile.CHRTYPE,
                         "fifo": tarfile.FIFOTYPE}[kind]  # fmt: skip
            info.linkname = value
            tar.addfile(info)
    return out.getvalue()


OK = ("file", "./install.sh", "#!/bin/sh\n")


@pytest.mark.parametrize(
    ("members", "words"),
    [
        ([OK, ("file", "../escaped", "x")], "climbs out"),
        ([OK, ("file", "./a/../../escaped", "x")], "climbs out"),
        ([OK, ("file", "/tmp/absolute-escape", "x")], "not a relative path"),
        ([OK, ("sym", "link", "../../outside")], "points out"),
        ([OK, ("sym", "link", "/etc/passwd")], "points out"),
        ([OK, ("sym", "up", ".."), ("file", "up/escaped", "x")], "points out"),
        # each link inside on its own, out together: a/b -> .., then s -> a/b/..
        ([OK, ("dir", "a", ""), ("sym", "a/b", ".."), ("sym", "s", "a/b/..")], "points out"),
        # a write through a link that points inside is refused as well
        ([OK, ("dir", "sub", ""), ("sym", "d", "sub"), ("file", "d/x", "x")], "under the symbolic"),
        ([OK, ("hard", "h", "../../etc/passwd")], "climbs out"),
        ([OK, ("hard", "h", "missing")], "not at a file of the archive"),
        ([OK, ("dev", "tty", "")], "special file"),
        ([OK, ("fifo", "pipe", "")], "special file"),
        ([OK, ("file", "./install.sh", "again")], "twice"),
    ],
)
def test_an_attack_tarball_is_refused_and_writes_nothing(
    tmp_path: Path, members: list[tuple[str, str, str]], words: str
) -> None:
    target = tmp_path / "deep" / "down" / "feature"
    target.mkdir(parents=True)
    with pytest.raises(safetar.UnsafeArchive) as refused:
        safetar.unpack(attack_tar(*members), target)
    assert words in refused.value.message
    assert refused.value.exit_code == EXIT_FAILED and refused.value.hint
    assert list(target.iterdir()) == []  # checked whole before anything is written
    assert not (tmp_path / "deep" / "escaped").exists()
    assert not (tmp_path / "deep" / "down" / "escaped").exists()


def test_a_safe_tarball_unpacks_with_links_inside_and_gzip(tmp_path: Path) -> None:
    plain = attack_tar(
        OK, ("dir", "./lib", ""), ("file", "./lib/tool", "t"), ("sym", "./bin", "lib"),
        ("sym", "./lib/self", "../lib/tool"), ("hard", "./copy", "install.sh"),
    )  # fmt: skip
    safetar.unpack(plain, tmp_path / "a")
    assert (tmp_path / "a" / "bin").is_symlink() and (tmp_path / "a" / "copy").read_text()
    gz = io.BytesIO()
    with tarfile.open(fileobj=gz, mode="w:gz") as tar:
        tar.addfile(tarfile.TarInfo("x"))
    safetar.unpack(gz.getvalue(), tmp_path / "b")
    assert (tmp_path / "b" / "x").is_file()
    with pytest.raises(safetar.UnsafeArchive, match="cannot be read"):
        safetar.unpack(b"not a tarball" * 100, tmp_path / "c")


def test_a_tarball_too_big_unpacked_is_refused_at_its_header(tmp_path: Path) -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo("huge")
        info.size = safetar.MAX_UNPACKED + 1
        tar.addfile(info)  # a header only: the check stops before any data is read
    with pytest.raises(safetar.UnsafeArchive, match="unpacks to more than"):
        safetar.unpack(out.getvalue(), tmp_path)


def gzip_bomb(header: tarfile.TarInfo, zeros: int) -> bytes:
    """A gzip layer: one header, then `zeros` bytes of zeros (about 1000:1 deflated)."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [deflate.compress(header.tobuf(tarfile.GNU_FORMAT))]
    block = bytes(1024 * 1024)
    for _ in range(zeros // len(block)):
        out.append(deflate.compress(block))
    return b"".join([*out, deflate.flush()])


def extended(kind: bytes, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo("././@LongLink")
    info.type, info.size = kind, size
    return info


@pytest.mark.parametrize("kind", [tarfile.GNUTYPE_LONGNAME, tarfile.XHDTYPE, tarfile.XGLTYPE])
def test_a_huge_long_name_or_pax_header_is_refused_unread(
    registry: Registry, tmp_path: Path, kind: bytes
) -> None:
    """The standard library reads such a header whole, before any member is seen: a
    layer of 64 KiB asked for 64 MiB in memory (a 50 MiB layer: tens of GiB)."""
    size = 64 * 1024 * 1024
    bomb = registry.add("cage/features/bomb", "1", layer=gzip_bomb(extended(kind, size), size))
    tracemalloc.start()
    try:
        with pytest.raises(safetar.UnsafeArchive, match="header of 67108864 bytes") as refused:
            fetcher(registry, tmp_path)(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "\n" not in refused.value.message
    assert peak < 8 * 1024 * 1024
    assert [p.name for p in cache_dir(tmp_path).iterdir()] == []


def test_a_gzip_bomb_is_inflated_only_to_its_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(safetar, "MAX_TAR", 8 * 1024 * 1024)
    zeros = gzip_bomb(tarfile.TarInfo("x"), 32 * 1024 * 1024)  # a member, then zeros
    tracemalloc.start()
    try:
        with pytest.raises(safetar.UnsafeArchive, match="unpacks to more than"):
            safetar.unpack(zeros, tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024
    assert list(tmp_path.iterdir()) == []
    cut = gzip_bomb(tarfile.TarInfo("x"), 0)[:-12]
    with pytest.raises(safetar.UnsafeArchive, match="cut short"):
        safetar.unpack(cut, tmp_path)


# --- the registry client ------------------------------------------------------------------


def test_a_feature_is_pulled_with_the_anonymous_token_and_cached(
    registry: Registry, tmp_path: Path
) -> None:
    ref = registry.add("cage/features/hello", "1", FEATURE)
    fetch = fetcher(registry, tmp_path)
    folder = fetch(ref)
    assert json.loads((folder / "devcontainer-feature.json").read_text())["id"] == "hello"
    assert (folder / "install.sh").stat().st_mode & 0o100
    assert folder.parent == cache_dir(tmp_path) and folder.name == registry.blob_requests()[0][-64:]
    assert any(p.startswith("/token?") and "repository%3Acage" in p for p in registry.requests)

    # a second start: the tag resolved again, the layer not pulled again
    before = len(registry.requests)
    assert fetcher(registry, tmp_path)(ref) == folder
    assert len(registry.blob_requests()) == 1
    assert not any("/blobs/" in p for p in registry.requests[before:])

    # pinned by digest: found in the cache without a request at all
    pinned = registry.pinned("cage/features/hello", "1")
    assert fetcher(registry, tmp_path)(pinned) == folder  # remembered once asked
    before = len(registry.requests)
    again = fetcher(registry, tmp_path)
    assert again(pinned) == folder and again.requests == 0
    assert len(registry.requests) == before


def test_a_tampered_blob_is_refused_and_nothing_is_kept(registry: Registry, tmp_path: Path) -> None:
    """ATTACK: the registry (or something on the way) serves other bytes than the
    manifest's digest names: refused, naming both digests, and the cache holds nothing."""
    ref = registry.add("cage/features/hello", "1", FEATURE)
    registry.tamper("cage/features/hello", "1")
    with pytest.raises(ociclient.RegistryError) as refused:
        fetcher(registry, tmp_path)(ref)
    assert (
        "not sha256:" in refused.value.message and "as its manifest says" in refused.value.message
    )
    assert refused.value.exit_code == EXIT_FAILED and refused.value.hint
    assert not cache_dir(tmp_path).exists() or list(cache_dir(tmp_path).iterdir()) == []


def test_a_pinned_reference_refuses_another_manifest(registry: Registry, tmp_path: Path) -> None:
    """ATTACK: the reference pins a manifest digest; the registry answers with another
    manifest for it (a moved tag served under the old digest): refused."""
    registry.add("cage/features/hello", "1", FEATURE)
    pinned = registry.pinned("cage/features/hello", "1")
    key = ("cage/features/hello", pinned.rpartition("@")[2])
    registry.manifests[key] = registry.manifests[key].replace(
        b'"schemaVersion": 2', b'"schemaVersion":2'
    )
    with pytest.raises(ociclient.RegistryError, match="not the one the reference pins"):
        fetcher(registry, tmp_path)(pinned)
    assert registry.blob_requests() == []


def test_sizes_are_capped(registry: Registry, tmp_path: Path) -> None:
    declared = registry.add("cage/features/big", "1", FEATURE, size=ociclient.MAX_LAYER + 1)
    with pytest.raises(ociclient.RegistryError, match="more than the"):
        fetcher(registry, tmp_path)(declared)
    assert registry.blob_requests() == []  # refused from the manifest, nothing pulled
    # a registry that sends more than the manifest declared: cut at the declared size
    lying = registry.add("cage/features/lying", "1", FEATURE, size=10)
    with pytest.raises(ociclient.RegistryError, match="larger than 10 bytes"):
        fetcher(registry, tmp_path)(lying)


def test_a_missing_tag_and_an_unreachable_registry_are_one_line(
    registry: Registry, tmp_path: Path
) -> None:
    registry.add("cage/features/hello", "1", FEATURE)
    with pytest.raises(ociclient.FeatureNotFound) as missing:
        fetcher(registry, tmp_path)(f"{registry.host}/cage/features/hello:9")
    assert missing.value.exit_code == EXIT_NOT_FOUND and "(404)" in missing.value.message
    closed = Fetcher(tmp_path, {"registry.test": "http://127.0.0.1:9"}, timeout=5)
    with pytest.raises(ociclient.RegistryError) as unreachable:
        closed("registry.test/cage/features/hello:1")
    assert "cannot reach the registry at http://127.0.0.1:9" in unreachable.value.message
    assert "feature_registry_mirrors" in str(unreachable.value.hint)
    assert "\n" not in unreachable.value.message


def test_a_layer_that_is_not_a_feature_is_refused(registry: Registry, tmp_path: Path) -> None:
    evil = registry.add("cage/features/evil", "1", layer=attack_tar(OK, ("file", "../x", "x")))
    with pytest.raises(safetar.UnsafeArchive, match="climbs out"):
        fetcher(registry, tmp_path)(evil)
    assert [p.name for p in cache_dir(tmp_path).iterdir()] == []  # no partial folder left
    assert not (cache_dir(tmp_path).parent / "x").exists()


def test_the_reader_takes_a_remote_feature_from_the_fetcher(
    registry: Registry, tmp_path: Path
) -> None:
    """devcontainer.json names a remote feature: its metadata's defaults and the
    options given become the install script's variables (upper-cased, as the spec
    says); its refusals hold as for a local one."""
    ref = registry.add("cage/features/hello", "1", FEATURE)
    root = tmp_path / "proj"
    (root / ".devcontainer").mkdir(parents=True)
    config = root / ".devcontainer" / "devcontainer.json"
    config.write_text(json.dumps({"image": "x", "features": {ref: {"extra-flag": True}}}))
    fetch = fetcher(registry, tmp_path / "data")
    (feature,) = devcontainer.read(config, root, "/workspace/proj", {}, fetch).features
    assert feature.id == ref and feature.options == {"GREETING": "hi", "EXTRA_FLAG": "true"}
    with pytest.raises(BadInput, match="needs its registry"):
        devcontainer.read(config, root, "/workspace/proj", {})

    privileged = registry.add(
        "cage/features/root", "1",
        {**FEATURE, "devcontainer-feature.json": json.dumps({"id": "r", "privileged": True})},
    )  # fmt: skip
    config.write_text(json.dumps({"image": "x", "features": {privileged: {}}}))
    with pytest.raises(BadInput, match="asks for 'privileged'"):
        devcontainer.read(config, root, "/workspace/proj", {}, fetch)


def test_errors_keep_their_exit_codes() -> None:
    assert issubclass(ociclient.RegistryError, CageError)
    assert ociclient.RegistryError("x").exit_code == EXIT_FAILED
    assert ociclient.FeatureNotFound("x").exit_code == EXIT_NOT_FOUND
    with pytest.raises(BadInput) as bad:
        ociclient.parse_reference("ghcr.io/x")
    assert bad.value.exit_code == EXIT_BAD_INPUT


def test_config_keys_of_the_mirrors_and_the_ca(tmp_path: Path) -> None:
    mirrors = VALIDATORS["feature_registry_mirrors"]
    assert mirrors({"GHCR.io": "https://mirror.example:5000/"}) == {
        "ghcr.io": "https://mirror.example:5000"
    }
    assert (
        mirrors('{"ghcr.io": "https://m"}')
        == mirrors("ghcr.io=https://m")
        == {"ghcr.io": "https://m"}
    )
    assert mirrors("") == {}
    for bad in ("ghcr.io", {"ghcr.io": "ftp://m"}, {"bad host": "https://m"}, ["x"]):
        with pytest.raises(ValueError):
            mirrors(bad)
    ca = VALIDATORS["feature_registry_ca"]
    assert ca(None) is None
    pem = tmp_path / "ca.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\n")
    assert ca(str(pem)) == str(pem)
    with pytest.raises(ValueError):
        ca(str(tmp_path / "missing.pem"))


def test_the_feature_tar_of_the_test_registry_is_what_the_cli_packs() -> None:
    with tarfile.open(fileobj=io.BytesIO(feature_tar(FEATURE))) as tar:
        names = tar.getnames()
    assert names == ["./devcontainer-feature.json", "./install.sh"]


def test_a_registry_that_drips_is_stopped_by_the_deadline(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = registry.add("cage/features/hello", "1", FEATURE)
    monkeypatch.setattr(ociclient, "DEADLINE", 0.0)  # every answer arrives past it
    with pytest.raises(ociclient.RegistryError, match=r"took more than 0 s"):
        fetcher(registry, tmp_path)(ref)


def test_a_damaged_ca_file_is_one_line(registry: Registry, tmp_path: Path) -> None:
    pem = tmp_path / "ca.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    fetch = Fetcher(tmp_path, {registry.host: registry.url}, str(pem), timeout=5)
    with pytest.raises(BadInput, match="feature_registry_ca: cannot load"):
        fetch(registry.add("cage/features/hello", "1", FEATURE))
