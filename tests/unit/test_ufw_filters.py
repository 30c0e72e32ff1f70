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
        "tsh_ufw_source",
        "tsh_ufw_stale_rules",
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("203.0.113.10/32", "203.0.113.10"),
        ("203.0.113.10", "203.0.113.10"),
        (" 203.0.113.10 ", "203.0.113.10"),
        ("192.0.2.77/24", "192.0.2.0/24"),
        ("198.51.100.0/28", "198.51.100.0/28"),
        ("2001:DB8:0:0::1", "2001:db8::1"),
        ("2001:db8::1/128", "2001:db8::1"),
        ("2001:db8::5/64", "2001:db8::/64"),
        ("any", "any"),
    ],
)
def test_ufw_source_is_the_form_ufw_stores(value, expected):
    assert tsh_net.tsh_ufw_source(value) == expected


def test_ufw_source_rejects_a_malformed_address():
    with pytest.raises(AnsibleFilterError, match="10.0.0.300"):
        tsh_net.tsh_ufw_source("10.0.0.300")


ADDED = [
    "Added user rules (see 'ufw status' for running firewall):",
    "ufw allow from 203.0.113.10 to any port 22 proto tcp",
    "ufw allow from 192.0.2.0/24 to any port 22 proto tcp",
    "ufw allow from 2001:db8::1 to any port 22 proto tcp",
    "ufw allow 80/tcp",
    "ufw allow 443/tcp",
]


def test_listed_sources_in_other_spellings_are_not_stale():
    """The lock-out bug: 203.0.113.10/32 was added, then deleted as 'stale', then ufw enabled."""
    wanted = [
        "ufw allow from 203.0.113.10/32 to any port 22 proto tcp",
        "ufw allow from 192.0.2.77/24 to any port 22 proto tcp",
        "ufw allow from 2001:DB8:0:0::1/128 to any port 22 proto tcp",
        "ufw allow 80/tcp",
        "ufw allow 443/tcp",
        "",
    ]
    assert tsh_net.tsh_ufw_stale_rules(ADDED, wanted) == []


def test_rules_no_longer_wanted_are_stale():
    wanted = ["ufw allow from 203.0.113.10 to any port 22 proto tcp", "ufw allow 443/tcp"]
    assert tsh_net.tsh_ufw_stale_rules(ADDED, wanted) == [
        "ufw allow from 192.0.2.0/24 to any port 22 proto tcp",
        "ufw allow from 2001:db8::1 to any port 22 proto tcp",
        "ufw allow 80/tcp",
    ]


def test_a_different_port_or_network_is_stale():
    added = [
        "ufw allow from 203.0.113.10 to any port 2222 proto tcp",
        "ufw allow from 203.0.113.0/24 to any port 22 proto tcp",
    ]
    wanted = ["ufw allow from 203.0.113.10 to any port 22 proto tcp"]
    assert tsh_net.tsh_ufw_stale_rules(added, wanted) == added


def test_unparsable_rule_lines_compare_as_text():
    added = ["ufw allow 22/tcp comment 'it''s'", "ufw allow 22/tcp comment 'unterminated"]
    assert tsh_net.tsh_ufw_stale_rules(added, ["ufw allow 22/tcp comment 'unterminated"]) == [added[0]]
