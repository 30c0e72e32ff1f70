"""The firewall seen from outside: probers on the same Docker network try every port."""

import pathlib

import pytest

from conftest import container_ip, outside_host, output, run_playbook, scenario_name, tcp_open

testinfra_hosts = ["ansible://targets"]

APPLY = pathlib.Path(__file__).with_name("apply_ufw.yml")
CLOSED_PORTS = [5432, 8001, 8002]


@pytest.fixture(scope="module")
def allowed():
    return outside_host("allowed")


@pytest.fixture(scope="module")
def denied():
    return outside_host("denied")


@pytest.fixture()
def target_ip(host):
    return container_ip(host.backend.get_hostname())


def test_firewall_active_with_default_deny(host):
    status = host.check_output("ufw status verbose")
    assert "Status: active" in status
    assert "deny (incoming), allow (outgoing), deny (routed)" in status


def test_listeners_bound_on_all_addresses(host):
    """Closed-from-outside below must be the firewall: the services do listen on 0.0.0.0."""
    for port in [80, 443, *CLOSED_PORTS]:
        assert host.socket(f"tcp://0.0.0.0:{port}").is_listening
        assert host.run(f"timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port}'").rc == 0


@pytest.mark.parametrize("port", [80, 443])
def test_web_ports_open_to_everyone(allowed, denied, target_ip, port):
    assert tcp_open(allowed, target_ip, port)
    assert tcp_open(denied, target_ip, port)


def test_ssh_open_only_to_listed_address(allowed, denied, target_ip):
    assert tcp_open(allowed, target_ip, 22)
    assert not tcp_open(denied, target_ip, 22)


@pytest.mark.parametrize("port", CLOSED_PORTS)
def test_internal_ports_closed_from_outside(allowed, target_ip, port):
    assert not tcp_open(allowed, target_ip, port)


def _rules(host):
    return host.check_output("ufw show added")


def test_sources_are_stored_as_ufw_spells_them(host):
    """converge.yml lists <prober>/32, 192.0.2.77/24 and 2001:DB8:0:0::1; all three survive."""
    rules = _rules(host)
    allowed_ip = container_ip(f"{scenario_name()}-outside-allowed")
    assert f"ufw allow from {allowed_ip} to any port 22 proto tcp" in rules
    assert "ufw allow from 192.0.2.0/24 to any port 22 proto tcp" in rules
    assert "ufw allow from 2001:db8::1 to any port 22 proto tcp" in rules


def test_rerun_with_other_spellings_changes_nothing(host, allowed, target_ip):
    """The lock-out bug: a /32 source was added, then pruned as stale, then ufw enabled."""
    before = _rules(host)
    allowed_ip = container_ip(f"{scenario_name()}-outside-allowed")
    sources = f'["{allowed_ip}/32", "192.0.2.77/24", "2001:db8:0::1/128"]'
    run = run_playbook(APPLY, "-e", f'{{"ufw_ssh_allowed_sources": {sources}}}', limit=host.backend.get_hostname())
    assert run.returncode == 0, output(run)[-3000:]
    assert "changed=0" in output(run)
    assert _rules(host) == before
    assert tcp_open(allowed, target_ip, 22)


def test_check_diff_reports_a_stale_rule_and_changes_nothing(host):
    """`--check --diff` on the converged host: no change; with a stray rule, the diff names it and
    the rule is still there afterwards."""
    allowed_ip = container_ip(f"{scenario_name()}-outside-allowed")
    sources = f'{{"ufw_ssh_allowed_sources": ["{allowed_ip}/32", "192.0.2.77/24", "2001:DB8:0:0::1"]}}'
    name = host.backend.get_hostname()
    run = run_playbook(APPLY, "--check", "--diff", "-e", sources, limit=name)
    assert run.returncode == 0, output(run)[-3000:]
    assert "changed=0" in output(run)
    host.run_expect([0], "ufw allow 9999/tcp")
    try:
        before = _rules(host)
        run = run_playbook(APPLY, "--check", "--diff", "-e", sources, limit=name)
        assert run.returncode == 0, output(run)[-3000:]
        assert "changed=1" in output(run)
        assert "-ufw allow 9999/tcp" in output(run)
        assert _rules(host) == before
    finally:
        host.run_expect([0], "ufw delete allow 9999/tcp")


def test_refuses_an_ssh_port_that_differs_from_sshd(host):
    before = _rules(host)
    run = run_playbook(APPLY, "-e", '{"base_sshd_port": 2222}', limit=host.backend.get_hostname())
    assert run.returncode != 0
    assert "base_sshd_port is 2222 but ufw_ssh_port is 22" in output(run)
    assert _rules(host) == before


def test_refuses_to_lock_out_the_controller(host):
    """A controller address that is not allowed fails before any rule changes."""
    before = _rules(host)
    name = host.backend.get_hostname()
    run = run_playbook(
        APPLY, "-e", '{"ufw_controller_address": "198.51.100.7", "ufw_ssh_allowed_sources": ["192.0.2.1"]}',
        limit=name,
    )
    assert run.returncode != 0
    assert "connects from 198.51.100.7, which is not in ufw_ssh_allowed_sources" in output(run)
    assert _rules(host) == before


def test_refuses_an_empty_allow_list(host):
    before = _rules(host)
    run = run_playbook(APPLY, "-e", '{"ufw_ssh_allowed_sources": []}', limit=host.backend.get_hostname())
    assert run.returncode != 0
    assert "ufw_ssh_allow_from_anywhere: true" in output(run)
    assert _rules(host) == before


def test_refuses_a_malformed_source(host):
    before = _rules(host)
    run = run_playbook(
        APPLY, "-e", '{"ufw_ssh_allowed_sources": ["10.0.0.300"]}', limit=host.backend.get_hostname()
    )
    assert run.returncode != 0
    assert "10.0.0.300" in output(run)
    assert _rules(host) == before


def test_stale_rules_are_removed(host):
    """A rule the inventory no longer lists is deleted on the next run; listed ones stay."""
    host.run_expect([0], "ufw allow 9999/tcp")
    allowed_ip = container_ip(f"{scenario_name()}-outside-allowed")
    run = run_playbook(
        APPLY, "-e", f'{{"ufw_ssh_allowed_sources": ["{allowed_ip}"]}}', limit=host.backend.get_hostname()
    )
    assert run.returncode == 0, output(run)[-3000:]
    rules = _rules(host)
    assert "9999" not in rules
    assert f"ufw allow from {allowed_ip} to any port 22 proto tcp" in rules
