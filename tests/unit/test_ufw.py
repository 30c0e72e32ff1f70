"""Unit tests for plugins/module_utils/tsh_ufw.py: the firewall's wanted state and the difference
applied, against a fake ufw that stores rules the way the real one does (addresses rewritten)."""

import importlib.util
import pathlib
import shlex

import pytest

_PATH = pathlib.Path(__file__).resolve().parents[2] / "plugins/module_utils/tsh_ufw.py"
_SPEC = importlib.util.spec_from_file_location("tsh_ufw", _PATH)
tu = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(tu)

POLICIES = {"incoming": "deny", "outgoing": "allow", "routed": "deny"}
WORDS = {"deny": "DROP", "allow": "ACCEPT", "reject": "REJECT"}


class FakeUfw:
    """ufw as the module sees it: `show added`, `status`, the two settings files, and the commands
    that change them. Rules are stored in ufw's spelling (source() is what ufw does to addresses)."""

    def __init__(self, rules=(), policies=None, logging="low", active=False, fail_on=None):
        self.rules = list(rules)
        self.policies = dict(policies or {"incoming": "deny", "outgoing": "allow", "routed": "allow"})
        self.logging, self.active, self.fail_on = logging, active, fail_on
        self.calls = []

    def run(self, argv):
        assert argv[0] == "ufw"
        args = argv[1:]
        self.calls.append(" ".join(args))
        if self.fail_on and " ".join(args).startswith(self.fail_on):
            return 1, "", "ERROR: Could not update running firewall"
        if args == ["show", "added"]:
            body = "\n".join(self.rules) or "(None)"
            return 0, f"Added user rules (see 'ufw status' for running firewall):\n{body}\n", ""
        if args == ["status"]:
            return 0, "Status: active\n" if self.active else "Status: inactive\n", ""
        if args[0] == "allow":
            words = ["ufw", *args]
            if "from" in words:
                words[words.index("from") + 1] = tu.source(words[words.index("from") + 1])
            self.rules.append(shlex.join(words))
        elif args[0] == "delete":
            self.rules.remove(shlex.join(["ufw", *args[1:]]))
        elif args[0] == "default":
            self.policies[args[2]] = args[1]
        elif args[0] == "logging":
            self.logging = args[1]
        elif args == ["--force", "enable"]:
            self.active = True
        else:
            raise AssertionError(f"unexpected ufw command {args}")
        return 0, "", ""

    def read(self, path):
        if path == tu.DEFAULTS_FILE:
            keys = {"incoming": "INPUT", "outgoing": "OUTPUT", "routed": "FORWARD"}
            return "".join(f'DEFAULT_{keys[d]}_POLICY="{WORDS[w]}"\n' for d, w in self.policies.items())
        if path == tu.CONF_FILE:
            return f"# /etc/ufw/ufw.conf\nENABLED={'yes' if self.active else 'no'}\nLOGLEVEL={self.logging}\n"
        raise AssertionError(path)

    def changes(self):
        return [c for c in self.calls if c not in ("show added", "status")]


WANTED = tu.wanted_rules(22, ["203.0.113.10/32", "192.0.2.77/24", "2001:DB8:0:0::1"], False, [80, 443])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("203.0.113.10/32", "203.0.113.10"),
        (" 203.0.113.10 ", "203.0.113.10"),
        ("192.0.2.77/24", "192.0.2.0/24"),
        ("198.51.100.0/28", "198.51.100.0/28"),
        ("2001:DB8:0:0::1", "2001:db8::1"),
        ("2001:db8::1/128", "2001:db8::1"),
        ("2001:db8::5/64", "2001:db8::/64"),
        ("any", "any"),
    ],
)
def test_source_is_the_form_ufw_stores(value, expected):
    assert tu.source(value) == expected


def test_source_rejects_a_malformed_address():
    with pytest.raises(tu.UfwError, match="10.0.0.300"):
        tu.source("10.0.0.300")


def test_wanted_rules_in_order_ssh_first():
    assert tu.wanted_rules(22, ["203.0.113.10/32"], False, [80, 443],
                           [{"port": 5432, "from": "10.10.0.0/24"}, {"port": "53", "proto": "udp"}]) == [
        "ufw allow from 203.0.113.10 to any port 22 proto tcp",
        "ufw allow 80/tcp",
        "ufw allow 443/tcp",
        "ufw allow from 10.10.0.0/24 to any port 5432 proto tcp",
        "ufw allow 53/udp",
    ]


def test_ssh_from_anywhere_ignores_the_sources():
    assert tu.wanted_rules(2222, ["203.0.113.10"], True, []) == ["ufw allow 2222/tcp"]


def test_two_spellings_of_one_network_are_one_rule():
    assert tu.wanted_rules(22, ["203.0.113.10", "203.0.113.10/32"], False, [80, 80]) == [
        "ufw allow from 203.0.113.10 to any port 22 proto tcp",
        "ufw allow 80/tcp",
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ssh_sources": ["office"]}, "'office' is not an IP address"),
        ({"open_tcp_ports": [0]}, "ufw_open_tcp_ports: '0' is not a port"),
        ({"extra_rules": [{"from": "10.0.0.1"}]}, "every item needs a port"),
        ({"extra_rules": [{"port": 53, "proto": "icmp"}]}, "proto must be tcp or udp"),
        ({"extra_rules": [{"port": 70000}]}, "'70000' is not a port"),
    ],
)
def test_bad_input_names_the_variable(kwargs, message):
    with pytest.raises(tu.UfwError, match=message):
        tu.wanted_rules(22, **kwargs)


ADDED = [
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
    ]
    assert tu.plan_rules(ADDED, wanted) == ([], [])


def test_rules_no_longer_wanted_are_stale_and_new_ones_added():
    wanted = ["ufw allow from 203.0.113.10 to any port 22 proto tcp", "ufw allow 443/tcp", "ufw allow 8443/tcp"]
    assert tu.plan_rules(ADDED, wanted) == (
        ["ufw allow 8443/tcp"],
        ["ufw allow from 192.0.2.0/24 to any port 22 proto tcp",
         "ufw allow from 2001:db8::1 to any port 22 proto tcp",
         "ufw allow 80/tcp"],
    )


def test_a_different_port_or_network_is_stale():
    added = ["ufw allow from 203.0.113.10 to any port 2222 proto tcp",
             "ufw allow from 203.0.113.0/24 to any port 22 proto tcp"]
    wanted = ["ufw allow from 203.0.113.10 to any port 22 proto tcp"]
    assert tu.plan_rules(added, wanted) == (wanted, added)


def test_unparsable_rule_lines_compare_as_text():
    added = ["ufw allow 22/tcp comment 'it''s'", "ufw allow 22/tcp comment 'unterminated"]
    assert tu.plan_rules(added, ["ufw allow 22/tcp comment 'unterminated"])[1] == [added[0]]


def test_show_added_header_and_none_are_not_rules():
    assert tu.added_rules("Added user rules (see 'ufw status' for running firewall):\n(None)\n") == []


def test_first_run_adds_rules_before_policies_and_enables_last():
    ufw = FakeUfw()
    result = tu.reconcile(ufw.run, ufw.read, WANTED, POLICIES, "low")
    assert result["changed"] and result["enabled"]
    assert ufw.changes() == [
        "allow from 203.0.113.10 to any port 22 proto tcp",
        "allow from 192.0.2.0/24 to any port 22 proto tcp",
        "allow from 2001:db8::1 to any port 22 proto tcp",
        "allow 80/tcp",
        "allow 443/tcp",
        "default deny routed",
        "--force enable",
    ]
    assert result["policies"] == {"routed": "deny"} and result["logging"] is None


def test_a_converged_firewall_costs_two_reads_and_changes_nothing():
    ufw = FakeUfw()
    tu.reconcile(ufw.run, ufw.read, WANTED, POLICIES, "low")
    ufw.calls.clear()
    result = tu.reconcile(ufw.run, ufw.read, WANTED, POLICIES, "low")
    assert ufw.calls == ["show added", "status"]
    assert not result["changed"] and result["commands"] == []
    assert result["diff"]["before"] == result["diff"]["after"]


def test_stale_rules_go_only_after_the_new_ones_exist():
    ufw = FakeUfw(rules=["ufw allow from 198.51.100.7 to any port 22 proto tcp", "ufw allow 9999/tcp"],
                  policies=POLICIES, active=True)
    result = tu.reconcile(ufw.run, ufw.read, WANTED, POLICIES, "low")
    changes = ufw.changes()
    assert changes[:5] == [line[len("ufw "):] for line in ADDED]
    assert changes[5:] == ["delete allow from 198.51.100.7 to any port 22 proto tcp", "delete allow 9999/tcp"]
    assert ufw.rules == ADDED and not result["enabled"]


def test_check_mode_reads_and_reports_but_runs_nothing():
    ufw = FakeUfw(rules=["ufw allow 9999/tcp"], logging="off")
    result = tu.reconcile(ufw.run, ufw.read, WANTED, POLICIES, "low", check=True)
    assert ufw.calls == ["show added", "status"]
    assert result["changed"] and result["removed"] == ["ufw allow 9999/tcp"] and result["logging"] == "low"
    assert "ufw logging low" in result["commands"] and "ufw --force enable" in result["commands"]
    assert "ufw allow 9999/tcp" in result["diff"]["before"]
    assert "ufw allow 9999/tcp" not in result["diff"]["after"]
    assert "status inactive" in result["diff"]["before"] and "status active" in result["diff"]["after"]


def test_a_failing_ufw_command_is_named():
    ufw = FakeUfw(fail_on="allow 80/tcp")
    with pytest.raises(tu.UfwError, match=r"`ufw allow 80/tcp` failed \(rc 1\): ERROR: Could not update"):
        tu.reconcile(ufw.run, ufw.read, WANTED, POLICIES, "low")
    assert not ufw.active


@pytest.mark.parametrize(
    ("policies", "logging", "message"),
    [
        ({"incoming": "drop"}, "low", "policy 'incoming: drop'"),
        ({"inbound": "deny"}, "low", "policy 'inbound: deny'"),
        (POLICIES, "loud", "ufw_logging must be one of"),
    ],
)
def test_bad_policies_or_logging_fail_before_any_command(policies, logging, message):
    ufw = FakeUfw()
    with pytest.raises(tu.UfwError, match=message):
        tu.reconcile(ufw.run, ufw.read, WANTED, policies, logging)
    assert ufw.calls == []


def test_settings_files_are_read_with_quotes_and_comments():
    assert tu.policies_of('# c\nDEFAULT_INPUT_POLICY="DROP"\nDEFAULT_OUTPUT_POLICY=\'ACCEPT\'\n') == {
        "incoming": "deny", "outgoing": "allow", "routed": None}
    assert tu.logging_of("ENABLED=no\nLOGLEVEL=medium\n") == "medium"
    assert tu.logging_of("") is None
    assert tu.active_of("Status: active\n\nTo Action From\n") is True
    assert tu.active_of("") is False
