"""Unit tests for the postgres role's input checks (plugins/filter/tsh_net.py)."""

import importlib.util
import pathlib

import pytest

_PATH = pathlib.Path(__file__).resolve().parents[2] / "plugins/filter/tsh_net.py"
_SPEC = importlib.util.spec_from_file_location("tsh_net", _PATH)
tsh_net = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(tsh_net)


@pytest.mark.parametrize(
    ("values", "bad"),
    [
        (["10.10.0.5", "::1", "2001:db8::5"], []),
        (["*", "0.0.0.0/0", "db.internal", "10.0.0.300"], ["*", "0.0.0.0/0", "db.internal", "10.0.0.300"]),
        (["0.0.0.0", "::", "8.8.8.8", "172.16.5.4"], ["0.0.0.0", "::", "8.8.8.8"]),
        ([], []),
        (None, []),
    ],
)
def test_invalid_addresses(values, bad):
    assert tsh_net.tsh_invalid_private_addresses(values) == bad


@pytest.mark.parametrize(
    ("values", "bad"),
    [
        (["10.10.0.0/24", "10.10.0.7", "2001:db8::/64", "10.10.0.1/24"], []),
        (["10.10.0.0/33", "app-net", "10.0.0.300/24"], ["10.10.0.0/33", "app-net", "10.0.0.300/24"]),
        (None, []),
    ],
)
def test_invalid_networks(values, bad):
    assert tsh_net.tsh_invalid_networks(values) == bad
