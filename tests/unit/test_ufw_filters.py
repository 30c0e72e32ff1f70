"""Unit tests for the ufw role's address filters (plugins/filter/tsh_net.py)."""

import importlib.util
import pathlib

import pytest
from ansible.errors import AnsibleFilterError

_PATH = pathlib.Path(__file__).resolve().parents[2] / "plugins/filter/tsh_net.py"
_SPEC = importlib.util.spec_from_file_location("tsh_net", _PATH)
tsh_net = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(tsh_net)


@pytest.mark.parametrize(
    ("address", "networks", "expected"),
    [
        ("203.0.113.10", ["203.0.113.10"], True),
        ("203.0.113.10", ["203.0.113.0/24"], True),
        ("203.0.113.10", ["198.51.100.0/24", "192.0.2.1"], False),
        ("::ffff:203.0.113.10", ["203.0.113.0/28"], True),
        ("2001:db8::5", ["2001:db8::/64"], True),
        ("2001:db8::5", ["203.0.113.0/24"], False),
        ("", ["0.0.0.0/0"], False),
        ("203.0.113.10", [], False),
    ],
)
def test_address_in_networks(address, networks, expected):
    assert tsh_net.tsh_address_in_networks(address, networks) is expected


def test_malformed_network_in_membership_check_is_an_error():
    with pytest.raises(AnsibleFilterError, match="10.0.0.300"):
        tsh_net.tsh_address_in_networks("10.0.0.1", ["10.0.0.300"])


def test_invalid_networks_lists_only_bad_items():
    values = ["10.0.0.1", "10.0.0.0/8", "10.0.0.300", "2001:db8::/32", "office", " 192.0.2.1 "]
    assert tsh_net.tsh_invalid_networks(values) == ["10.0.0.300", "office"]


def test_invalid_networks_of_nothing():
    assert tsh_net.tsh_invalid_networks(None) == []
    assert tsh_net.tsh_invalid_networks([]) == []


def test_filters_are_registered():
    names = tsh_net.FilterModule().filters()
    assert set(names) == {
        "tsh_invalid_networks",
        "tsh_invalid_private_addresses",
        "tsh_address_in_networks",
    }
