"""Values that cross from Python into the image files (shell entrypoints, squid.conf,
nginx.conf.template): each pair is held together here, by reading the image files."""

from __future__ import annotations

import re

import pytest

from claude_cage import policy
from claude_cage.operations import bridges
from claude_cage.paths import package_data

IMAGES = package_data("images")


def image_file(path: str) -> str:
    return (IMAGES / path).read_text()


def test_squid_listens_where_the_companion_bridges_connect() -> None:
    assert f"http_port 127.0.0.1:{policy.SQUID_PORT}\n" in image_file("companion/squid.conf")
    entrypoint = image_file("companion/companion-entrypoint")
    targets = set(re.findall(r"TCP:127\.0\.0\.1:(\d+)", entrypoint))
    assert str(policy.SQUID_PORT) in targets
    assert targets <= {str(p) for p in (policy.SQUID_PORT, *policy.BUMP_PORTS)}


def test_squid_keeps_the_bridge_probe_out_of_the_audit() -> None:
    conf = image_file("companion/squid.conf")
    assert f"acl cage_probe dstdomain -n {bridges.PROBE_HOST}\n" in conf
    # refused before any allow, and not logged before the audit's own access_log line
    assert conf.index("http_access deny cage_probe") < conf.index("http_access allow")
    assert conf.index("access_log none cage_probe") < conf.index("access_log stdio:")


def test_the_socket_volume_is_mounted_where_the_images_look() -> None:
    assert f"\nSOCK={policy.COMPANION_SOCK_DIR}\n" in image_file("companion/companion-entrypoint")
    assert f"\nSOCK_DIR={policy.SOCK_DIR}\n" in image_file("cli/cage-entrypoint")
    layout = f"mkdir -p {policy.COMPANION_SOCK_DIR}/out {policy.COMPANION_SOCK_DIR}/in"
    assert layout in image_file("companion/Dockerfile")


@pytest.mark.parametrize(
    ("socket", "where"),
    [
        (f"in/{policy.VNC_SOCKET}", "$SOCK/in/vnc.sock"),
        (f"in/{policy.port_socket(1234)}".replace("1234", "$port"), "$SOCK/in/port-$port.sock"),
    ],
)
def test_companion_sockets(socket: str, where: str) -> None:
    assert f"$SOCK/{socket}" == where
    assert where in image_file("companion/companion-entrypoint")


def test_the_proxy_socket_is_made_in_out() -> None:
    """The companion works from inside out/ (own_outbox): the socket is named from there."""
    entrypoint = image_file("companion/companion-entrypoint")
    assert 'cd -P "$SOCK/out"' in entrypoint
    assert f"UNIX-LISTEN:{policy.PROXY_SOCKET}," in entrypoint


def test_x11vnc_listens_on_the_named_socket() -> None:
    desktop = image_file("desktop/desktop-session")
    assert f"\nVNC_SOCKET={policy.SOCK_DIR}/in/{policy.VNC_SOCKET}\n" in desktop


def test_websockify_listens_on_the_novnc_port() -> None:
    entrypoint = image_file("companion/companion-entrypoint")
    assert re.search(rf"--token-source [^\n]* {policy.NOVNC_PORT} ", entrypoint)
