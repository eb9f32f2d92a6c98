"""A start's flags go one way: into its request, never into the config as a layer that is
read back out; the policy then decides what the request means for the sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from claude_cage import policy
from claude_cage.context import Context
from claude_cage.errors import BadInput
from claude_cage.operations import inputs
from claude_cage.operations.inputs import StartOptions


@pytest.fixture(autouse=True)
def isolated(config_dir: Path) -> Path:
    return config_dir


def test_flags_go_into_the_request_and_leave_the_config_alone(isolated: Path) -> None:
    (isolated / "config.yaml").write_text("network: none\nmemory: 1g\n")
    options = StartOptions(network="host", memory="5G", pids=64, runtime="runc")
    cfg, flags = inputs.load_settings(Context(), options)
    assert flags == {"network": "host", "memory": "5g", "pids": 64, "runtime": "runc"}
    assert cfg["network"] == "none" and cfg["memory"] == "1g"  # the config as configured
    assert "flags" not in cfg.sources.values()
    req, _repo = inputs.build_request(cfg, flags, options, "web")
    assert (req.network, req.memory, req.pids, req.runtime) == ("host", "5g", 64, "runc")
    # Without flags, the config decides.
    cfg, flags = inputs.load_settings(Context(), StartOptions())
    req, _repo = inputs.build_request(cfg, flags, StartOptions(), "web")
    assert flags == {} and (req.network, req.memory) == ("none", "1g")


def test_a_bad_flag_and_a_bad_file_are_refused_together(isolated: Path) -> None:
    (isolated / "config.yaml").write_text("cpus: many\n")
    with pytest.raises(BadInput) as err:
        inputs.load_settings(Context(), StartOptions(memory="lots"))
    assert err.value.message.startswith("bad config:") and "(and 1 more)" in err.value.message


def test_the_request_keeps_the_allowlist_for_the_policy_to_decide() -> None:
    """build_request does not decide what --network none does to the allowlist:
    policy.resolve empties it, since nothing filters."""
    options = StartOptions(network="none", allow_hosts=("example.com",))
    cfg, flags = inputs.load_settings(Context(), options)
    req, _repo = inputs.build_request(cfg, flags, options, "web")
    assert "example.com" in req.allowed_hosts
    assert policy.resolve(req, [], api_key=False).allowed_hosts == ()


def test_the_sandbox_refusals_come_before_the_rest_is_read(tmp_path: Path) -> None:
    """A port the host network cannot publish is refused before a missing mount."""
    options = StartOptions(network="host", ports=("8080:3000",), mounts=(str(tmp_path / "x"),))
    cfg, flags = inputs.load_settings(Context(), options)
    with pytest.raises(BadInput) as err:
        inputs.build_request(cfg, flags, options, "web")
    assert "--network host" in err.value.message


def test_presets_are_rules_of_the_session_layer_not_allowlist_hosts(isolated: Path) -> None:
    """The config's presets and --allow-preset both become the request's presets (one
    expansion: netpolicy.rules.session_layer), never hosts allowed for every method."""
    (isolated / "config.yaml").write_text("allowed_presets: [go]\n")
    options = StartOptions(allow_presets=("Python", "python"), allow_hosts=("pypi.org",))
    cfg, flags = inputs.load_settings(Context(), options)
    req, _repo = inputs.build_request(cfg, flags, options, "web")
    assert req.allowed_presets == ("go", "python")
    assert req.allowed_hosts[-1] == "pypi.org"  # given on its own: the user's choice
    assert "files.pythonhosted.org" not in req.allowed_hosts
    assert "proxy.golang.org" not in req.allowed_hosts
    assert "api.anthropic.com" in req.allowed_hosts  # the defaults stay


def test_an_unknown_preset_is_refused_with_the_known_ones(isolated: Path) -> None:
    options = StartOptions(allow_presets=("cobol",))
    cfg, flags = inputs.load_settings(Context(), options)
    with pytest.raises(BadInput) as err:
        inputs.build_request(cfg, flags, options, "web")
    assert "--allow-preset" in err.value.message and "python, node" in err.value.message
    (isolated / "config.yaml").write_text("allowed_presets: [python, cobol]\n")
    with pytest.raises(BadInput) as err:
        inputs.load_settings(Context(), StartOptions())
    assert "allowed_presets" in err.value.message


def test_every_preset_host_is_a_valid_allowlist_host() -> None:
    from claude_cage import presets
    from claude_cage.config import validate_host

    for name, hosts in presets.PRESETS.items():
        assert hosts, name
        assert [validate_host(h) for h in hosts] == list(hosts)
