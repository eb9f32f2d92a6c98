"""The record round-trips: every value `start` records reads back exactly, whatever it
holds (`:`, `=`, spaces, newlines, non-ASCII, undecodable bytes of a path), through the
one writer and the one reader, in the seed's key=value format."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from claude_cage import metadata, record
from claude_cage.kinds import Credential, Mode, Network, Status
from claude_cage.metadata import SessionStore
from claude_cage.record import Mount, SessionRecord

# Any character a Python string can hold, lone surrogates (os.fsdecode's stand-ins for
# bytes that are not UTF-8) included; but NUL, which no path, name or setting holds
# (a record with one is damaged: tests/unit/test_record_damage.py).
ANY_TEXT = st.text(st.characters(exclude_categories=(), exclude_characters="\x00"), max_size=40)
SOME_TEXT = ANY_TEXT.filter(bool)  # `X | None` fields read an empty value as None
PATHS = st.one_of(
    ANY_TEXT,
    st.sampled_from(["/srv/my project: a=b", "/tmp/x\ny", "/home/\u00e9t\u00e9/\u6f22", "a\\:b:"]),
)
NAMES = st.from_regex(r"[a-z0-9][a-z0-9-]{0,20}", fullmatch=True)
ENV_KEYS = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,15}", fullmatch=True)
WHEN = st.from_regex(
    r"20[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9]Z", fullmatch=True
)
PORT = st.integers(1, 65535)
SIZES = st.from_regex(r"[1-9][0-9]{1,3}m|[1-9][0-9]{0,2}g", fullmatch=True)
ADDRESSES = st.sampled_from(["127.0.0.1", "0.0.0.0", "::1", "192.168.1.20"])


@st.composite
def records(draw: st.DrawFn) -> SessionRecord:
    name = draw(NAMES)
    return SessionRecord(
        name=name,
        mode=draw(st.sampled_from(Mode)),
        status=draw(st.sampled_from(Status)),
        created=draw(WHEN),
        container=f"cage-{name}",
        companion=draw(st.sampled_from(["", f"companion-cage-{name}"])),
        network=draw(st.sampled_from(Network)),
        image=draw(ANY_TEXT),
        cpus=draw(st.none() | st.floats(0.1, 256, allow_nan=False)),
        memory=draw(st.none() | SIZES),
        pids=draw(st.none() | st.integers(16, 10**6)),
        mounts=tuple(draw(st.lists(st.builds(Mount, PATHS, PATHS, st.booleans()), max_size=3))),
        ports=tuple(draw(st.lists(st.tuples(PORT, PORT), max_size=3))),
        env_keys=tuple(draw(st.lists(ENV_KEYS, max_size=4))),
        ephemeral=draw(st.booleans()),
        persist=draw(st.booleans()),
        credential=draw(st.sampled_from(Credential)),
        allowed_hosts=tuple(draw(st.lists(ANY_TEXT, max_size=3))),
        allowed_ports=tuple(draw(st.lists(PORT, max_size=3))),
        desktop_port=draw(st.none() | PORT),
        desktop_bind=draw(st.none() | ADDRESSES),
        started=draw(st.none() | WHEN),
        egress_network=draw(st.none() | SOME_TEXT),
        engine=draw(ANY_TEXT),
        seccomp_profile=draw(st.none() | PATHS.filter(bool)),
        read_only_root=draw(st.none() | st.booleans()),
        nofile=draw(st.none() | st.integers(64, 10**6)),
        repo=draw(st.none() | PATHS.filter(bool)),
        repo_name=draw(st.none() | SOME_TEXT),
        branch=draw(st.none() | SOME_TEXT),
        uid=draw(st.none() | st.integers(0, 2**31)),
        extra=draw(
            st.dictionaries(st.from_regex(r"x_[a-z]{1,8}", fullmatch=True), SOME_TEXT, max_size=2)
        ),
    )


def through_text(session: SessionRecord) -> SessionRecord:
    text = metadata.render({**record.to_fields(session), "schema": metadata.SCHEMA})
    data = metadata.parse(text)
    data.pop("schema")
    return record.from_fields(data)


@settings(max_examples=400, deadline=None)
@given(records())
def test_every_record_reads_back_exactly(session: SessionRecord) -> None:
    assert through_text(session) == session


@settings(max_examples=40, deadline=None)
@given(records())
def test_through_the_store_too(tmp_path_factory, session: SessionRecord) -> None:
    store = SessionStore(tmp_path_factory.mktemp("data") / "sessions")
    store.save(session)
    loaded = store.load(session.name)
    assert loaded is not None
    assert dataclasses.replace(loaded, updated=None) == dataclasses.replace(session, updated=None)


def test_the_seeds_keys_keep_the_seeds_format(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "sessions")
    session = SessionRecord("web", created="2026-11-24T09:56:11Z", container="cage-web",
                            mounts=(Mount("/srv/a:b", "/workspace/a:b", True),))  # fmt: skip
    store.save(session)
    lines = (store.dir("web") / "metadata").read_text().splitlines()
    assert lines[:5] == [
        "name=web", "mode=cli", "status=running", "created=2026-11-24T09:56:11Z",
        "container=cage-web",
    ]  # fmt: skip
    assert lines[-1] == "schema=2"
    assert 'mounts=["/srv/a\\\\:b:/workspace/a\\\\:b:ro"]' in lines


def test_schema_1_files_still_read(tmp_path: Path) -> None:
    """What earlier versions wrote: mounts unescaped (colons in the paths too), no
    escapes in values, the schema line anywhere."""
    store = SessionStore(tmp_path / "sessions")
    (store.dir("web")).mkdir(parents=True)
    (store.dir("web") / "metadata").write_text(
        "name=web\nmode=cli\nstatus=stopped\ncreated=2026-11-24T09:56:11Z\ncontainer=cage-web\n"
        'mounts=["/srv/my: project:/workspace/my: project:ro","/a\\\\b:/workspace/a\\\\b:rw"]\n'
        "repo=/srv/x\\ny\nschema=1\nupdated=2026-11-24T09:56:12Z\n"
    )
    session = store.load("web")
    assert session is not None
    assert session.mounts == (
        Mount("/srv/my: project", "/workspace/my: project", True),
        Mount("/a\\b", "/workspace/a\\b", False),
    )
    assert session.repo == "/srv/x\\ny"  # schema 1 escaped nothing


def test_a_mount_with_colons_restarts_with_the_right_paths() -> None:
    """The restart path: the recorded mount back into a request, not a `--cpus` error."""
    from claude_cage import config
    from claude_cage.operations.inputs import request_from_record

    mount = Mount("/srv/a:b=c d", "/workspace/a:b=c d", False)
    session = through_text(SessionRecord("web", created="x", container="cage-web", mounts=(mount,)))
    request = request_from_record(session, config.load(environ={}))
    assert request.mounts == (mount,)
