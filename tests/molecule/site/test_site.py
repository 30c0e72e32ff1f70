"""The whole droplet after site.yml: check mode, the maintenance answer before the first deploy, then a
first deploy of the sample app and every part seen working from where its users see it. Last, the
deploy lock: a killed run's lock is broken by the next deploy at once, a live run's lock refuses a
deploy naming playbooks/unlock.yml, and unlock.yml breaks it only with the lock's token.

Each check looks at all targets itself (fixture `hosts`), in file order (see test_bluegreen.py: with
testinfra's parametrized `host` the second target's checks would run after the first target's deploy).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time

import pytest

from conftest import (REPO, build_release, container_ip, molecule_targets, outside_host, output, playbook_command,
                      recap, run_playbook, status_output, target_hosts, tcp_open)

testinfra_hosts = []

GROUPS = str(REPO / "tests/molecule/droplet_groups.ini")
SAMPLE = REPO / "tests/fixtures/sample_app"
TARGETS = tuple(molecule_targets())
NAMES = ["tsh.sale", "www.tsh.sale", "erp.tsh.sale", "shop.tsh.sale", "consumer.tsh.sale"]
CA = "/usr/local/share/tsh-test/pebble-api.pem"
ROOT = "/var/tmp/pebble-root.pem"


@pytest.fixture(scope="module")
def hosts():
    return target_hosts()


def https(host, name, path="/", *args):
    """curl from the target to its own scenario-network address, trusting only Pebble's current root."""
    ip = container_ip(host.backend.get_hostname())
    return host.run(f"curl -sS --max-time 10 --cacert {ROOT} --resolve {name}:443:{ip} {' '.join(args)} "
                    f"https://{name}{path}")


# Before any deploy -----------------------------------------------------------------------------
def assert_site_yml_changes_nothing(*args):
    """site.yml (with args) over both droplets: rc 0, changed=0 and failed=0 on each."""
    run = run_playbook(REPO / "site.yml", "-i", GROUPS, *args)
    assert run.returncode == 0, output(run)[-4000:]
    for name in TARGETS:
        counters = recap(run, name)
        assert counters["changed"] == 0 and counters["failed"] == 0, counters


def test_check_mode_on_the_converged_droplet_changes_nothing():
    """site.yml --check --diff on a converged host reports no change and no failure."""
    assert_site_yml_changes_nothing("--check", "--diff")


def test_api_answers_maintenance_before_the_first_deploy(hosts):
    for host in hosts:
        host.run_expect([0], f"curl -fsS --cacert {CA} https://pebble:15000/roots/0 -o {ROOT}")
        page = https(host, "erp.tsh.sale", "/health", "-o /dev/null -w '%{http_code}'")
        assert page.stdout == "503", page.stdout + page.stderr
        assert json.loads(https(host, "erp.tsh.sale", "/health").stdout)["status"] == "maintenance"


# The first deploy --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("releases")


@pytest.fixture(scope="module")
def first_deploy(build_dir):
    build = subprocess.run(
        ["ansible-playbook", str(REPO / "playbooks/build.yml"), "-e", f"app_src={SAMPLE}", "-e", "app_version=s1",
         "-e", f"build_dir={build_dir}", "-e", '{"build_python_versions": ["3.11", "3.13"]}'],
        capture_output=True, text=True, cwd=REPO, check=False)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-2000:]
    run = run_playbook(REPO / "deploy.yml", "-i", GROUPS, "-e", "release_version=s1", "-e", f"deploy_build_dir={build_dir}")
    assert run.returncode == 0, output(run)[-4000:]
    return run


def test_every_name_serves_the_acme_certificate(hosts, first_deploy):
    """Each of the five names over HTTPS: one Pebble-issued certificate covering all five, verified
    against Pebble's current root (curl --cacert fails on anything else)."""
    for host in hosts:
        for name in NAMES:
            path = "/health" if name == "erp.tsh.sale" else "/"
            page = https(host, name, path, "-o /dev/null -w '%{http_code}'")
            assert page.rc == 0, f"{name}: {page.stderr}"
            assert page.stdout == ("301" if name == "tsh.sale" else "200"), (name, page.stdout)
        ip = container_ip(host.backend.get_hostname())
        sans = host.check_output(f"openssl s_client -connect {ip}:443 -servername shop.tsh.sale </dev/null 2>/dev/null"
                                 " | openssl x509 -noout -ext subjectAltName")
        assert sorted(s.strip()[4:] for s in sans.splitlines()[1].split(",")) == sorted(NAMES)


def test_api_health_through_nginx(hosts, first_deploy):
    for host in hosts:
        page = https(host, "erp.tsh.sale", "/health")
        assert page.rc == 0, page.stderr
        body = json.loads(page.stdout)
        assert body["version"] == "s1" and body["color"] == "blue"
        assert body["status"] == "healthy" and body["database"]["status"] == "healthy"


def test_site_yml_after_a_deploy_changes_nothing_and_the_api_keeps_serving(hosts, first_deploy):
    """Roles converge a host and can be re-run at any time without moving traffic: site.yml after a
    deploy (the static roots are links to the release now) changes nothing and fails nowhere."""
    assert_site_yml_changes_nothing()
    test_api_health_through_nginx(hosts, first_deploy)


def test_app_units_are_sandboxed(hosts, first_deploy):
    """systemd-analyze security: both colour units at 2.5 or lower, the serving one healthy under it
    (test_api_health_through_nginx)."""
    for host in hosts:
        for unit in ("tsh_erp-blue.service", "tsh_erp-green.service"):
            overall = host.check_output(f"systemd-analyze security --no-pager {unit} | tail -n 1")
            exposure = float(re.search(r"exposure level for \S+: ([0-9.]+)", overall).group(1))
            assert exposure <= 2.5, overall
        for unit in ("nginx.service", "tsh_erp-blue.service"):
            pid = host.check_output(f"systemctl show -p MainPID --value {unit}")
            assert "NoNewPrivs:\t1" in host.file(f"/proc/{pid}/status").content_string, unit


def test_firewall_from_outside(hosts, first_deploy):
    allowed, denied = outside_host("allowed"), outside_host("denied")
    for host in hosts:
        ip = container_ip(host.backend.get_hostname())
        for port in (80, 443):
            assert tcp_open(allowed, ip, port) and tcp_open(denied, ip, port), port
        assert tcp_open(allowed, ip, 22)
        assert not tcp_open(denied, ip, 22)
        for port in (5432, 8001, 8002, 8099):
            assert not tcp_open(allowed, ip, port), port


def test_backup_and_its_verification(hosts, first_deploy):
    for host in hosts:
        for unit in ("tsh-backup.service", "tsh-backup-verify.service"):
            run = host.run(f"systemctl start {unit}")
            assert run.rc == 0, host.check_output(f"journalctl -u {unit} -n 20 --no-pager -o cat")
        verify = json.loads(host.file("/var/lib/tsh-backups/verify.json").content_string)
        assert verify["result"] == "success"
        # The deploy's own dump is there too, named with the release.
        host.run_expect([0], "ls /opt/tsh_erp/backups/tsh_erp_*-pre-deploy-s1.dump")


def status(*args):
    """playbooks/status.yml over both droplets: (run, what it printed). Read-only: changed=0."""
    run = run_playbook(REPO / "playbooks/status.yml", "-i", GROUPS, *args)
    assert run.returncode == 0, output(run)[-3000:]
    for name in TARGETS:
        assert recap(run, name)["changed"] == 0, recap(run, name)
    return run, status_output(run)


def block(lines, name):
    """The table's lines for one droplet (each target is a whole droplet: one block each)."""
    start = lines.index(f"TSH ERP on {name} (app: {name}; db: {name})")
    end = lines.index("", start) if "" in lines[start:] else len(lines)
    return lines[start + 1:end]


def test_status_table_of_the_healthy_droplet(first_deploy):
    """After the first deploy and a backup: blue serves s1, nothing to warn about. Also under --check."""
    for args in ((), ("--check",)):
        _run, lines = status(*args)
        # The README's sample table comes from here.
        (REPO / ".molecule-logs").mkdir(exist_ok=True)
        (REPO / ".molecule-logs/site-status.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        for name in TARGETS:
            mine = block(lines, name)
            assert mine[0] == "Serving             blue  release s1  (link blue, nginx routes to blue)", mine
            assert mine[1].split() == ["Colours", "colour", "unit", "boot", "release", "health", "uptime"], mine
            assert mine[2].split()[:7] == ["blue", "*", "active", "enabled", "s1", "200", "healthy"], mine
            assert mine[3].split()[:4] == ["green", "inactive", "disabled", "none"], mine
            assert "Lock                none" in mine
            deploys = [line for line in mine if "  deploy  s1  none -> blue  success" in line]
            assert len(deploys) == 1 and deploys[0].startswith("Last deploys        20"), mine
            assert re.fullmatch(r"Certificate         expires \d{4}-\d\d-\d\d \(\d+ days left\)",
                                next(line for line in mine if line.startswith("Certificate"))), mine
            assert re.fullmatch(r"Last backup         \d+[sm] ago \(.*\), \d+ files, [\d.]+ [KM]?B",
                                next(line for line in mine if line.startswith("Last backup"))), mine
            assert re.fullmatch(r"Backups kept        \d+ dumps?, [\d.]+ [KMG]?B in all; [\d.]+ GB free on /opt/tsh_erp/backups",
                                next(line for line in mine if line.startswith("Backups kept"))), mine
            assert re.fullmatch(r"Free disk           [\d.]+ % free \([\d.]+ GB of [\d.]+ GB\) on /opt/tsh_erp",
                                next(line for line in mine if line.startswith("Free disk"))), mine
            assert mine[-1] == "Warnings            none", mine


def test_status_json_of_the_healthy_droplet(first_deploy):
    _run, shown = status("-e", "status_format=json")
    assert shown["warnings"] == [] and shown["unreachable"] == [], shown["warnings"]
    assert [cell["web_host"] for cell in shown["cells"]] == list(TARGETS)
    for cell in shown["cells"]:
        name = cell["web_host"]
        assert cell["serving"] == {"colour": "blue", "release": "s1", "link": "blue", "routed": "blue"}
        colours = cell["app"][name]["colours"]
        assert colours["blue"]["active"] == "active" and colours["blue"]["enabled"] == "enabled"
        assert colours["blue"]["health"]["code"] == 200 and colours["blue"]["uptime_s"] > 0
        assert colours["green"]["release"] is None and colours["green"]["health"] is None
        assert cell["lock"] is None and cell["warnings"] == []
        assert [(d["operation"], d["version"], d["outcome"]) for d in cell["deploys"]] == [("deploy", "s1", "success")]
        assert cell["certificate"]["days_left"] > 21
        assert cell["backup"]["age_s"] < 3600 and cell["backup"]["size_bytes"] > 0
        assert 0 < cell["app"][name]["disk"]["free_percent"] <= 100


def test_status_warns_when_the_serving_colour_does_not_start_at_boot(hosts, first_deploy):
    host = hosts[0]
    name = host.backend.get_hostname()
    host.run_expect([0], "systemctl disable tsh_erp-blue")
    try:
        _run, lines = status()
    finally:
        host.run_expect([0], "systemctl enable tsh_erp-blue")
    assert block(lines, name)[-1] == ("Warnings            The serving colour blue is not enabled at boot (disabled): "
                                      "systemctl enable tsh_erp-blue, or run deploy/rollback."), block(lines, name)
    for other in TARGETS[1:]:
        assert block(lines, other)[-1] == "Warnings            none"
    _run, shown = status("-e", "status_format=json")
    assert shown["warnings"] == []


# A reboot ----------------------------------------------------------------------------------------
def test_after_a_reboot_only_the_serving_colour_nginx_and_postgres_come_up_and_the_site_answers(hosts, first_deploy):
    """Fault table, row "reboot": both droplets restart (their containers, systemd as PID 1): what is enabled at boot comes up by
    itself, the idle colour stays down, and the API answers through nginx with the same release."""
    for host in hosts:
        subprocess.run(["docker", "stop", host.backend.get_hostname()], check=True, capture_output=True, timeout=120)
        subprocess.run(["docker", "start", host.backend.get_hostname()], check=True, capture_output=True, timeout=60)
    for host in hosts:
        host.run_expect([0], "timeout 120 sh -c 'until state=$(systemctl is-system-running); "
                             "[ \"$state\" = running ] || [ \"$state\" = degraded ]; do sleep 1; done'")
        units = "tsh_erp-blue tsh_erp-green nginx 'postgresql@*-main.service'"
        states = host.run(f"systemctl is-active {units}").stdout.split()
        assert states == ["active", "inactive", "active", "active"], (host.backend.get_hostname(), states)
        # Until the colour answers (nginx's 502 page meanwhile: -f makes curl fail on it).
        deadline = time.monotonic() + 60
        while (page := https(host, "erp.tsh.sale", "/health", "-f")).rc != 0 and time.monotonic() < deadline:
            time.sleep(1)
        assert page.rc == 0, page.stderr
        assert json.loads(page.stdout)["version"] == "s1"


# The deploy lock ---------------------------------------------------------------------------------
LOCK = "/opt/tsh_erp/deploy/lock"


def fake_lock(hosts, pid, start, token):
    """A lock as a run of this controller (the machine running the tests and ansible-playbook) leaves it:
    holder.json naming this controller's host name, boot id, an ansible-playbook pid and its start time."""
    with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
        boot = f.read().strip()
    holder = json.dumps({"holder": "ops@controller", "version": "s9", "operation": "deploy",
                         "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                         "started_epoch": int(time.time()), "token": token, "controller": socket.gethostname(),
                         "controller_boot_id": boot, "controller_pid": pid, "controller_pid_start": start})
    for host in hosts:
        host.run_expect([0], f"mkdir -p {LOCK} && echo {shlex.quote(holder)} > {LOCK}/holder.json")


def start_time(pid):
    with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
        return int(f.read().rsplit(")", 1)[1].split()[19])


def served(host):
    return json.loads(https(host, "erp.tsh.sale", "/health").stdout)


@pytest.fixture(scope="module")
def killed_run_deploy(hosts, build_dir, first_deploy):
    """A run killed while it held the lock (its process has ended: a child of this test, reaped), then
    the next deploy, of s2, right away."""
    build_release(build_dir, "s2")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    fake_lock(hosts, dead.pid, 4242, "killedrun0000001")
    run = run_playbook(REPO / "deploy.yml", "-i", GROUPS, "-e", "release_version=s2", "-e", f"deploy_build_dir={build_dir}")
    return run, dead.pid


def test_a_killed_runs_lock_is_broken_by_the_next_deploy_at_once(hosts, killed_run_deploy):
    run, pid = killed_run_deploy
    text = output(run)
    assert run.returncode == 0, text[-4000:]
    for host in hosts:
        assert (f"Broke the deploy lock {LOCK} on {host.backend.get_hostname()}, held by ops@controller deploying s9"
                in text), text[-4000:]
    assert f"that run is gone (its process, ansible-playbook pid {pid}, no longer runs on {socket.gethostname()})" in text
    for host in hosts:
        assert served(host)["version"] == "s2"
        assert not host.file(LOCK).exists


@pytest.fixture(scope="module")
def live_lock(hosts, killed_run_deploy, build_dir):
    """A lock of a run that still goes (this test's own process stands in for its ansible-playbook)."""
    fake_lock(hosts, os.getpid(), start_time(os.getpid()), "liverun000000001")
    yield run_playbook(REPO / "deploy.yml", "-i", GROUPS, "-e", "release_version=s1", "-e", f"deploy_build_dir={build_dir}")
    for host in hosts:
        host.run_expect([0], f"rm -rf {LOCK}")


def test_a_live_runs_lock_refuses_the_deploy_naming_unlock(hosts, live_lock):
    text = output(live_lock)
    assert live_lock.returncode != 0
    assert f"Deploy lock {LOCK} is held by ops@controller deploying s9 since" in text
    assert f"controller {socket.gethostname()} pid {os.getpid()}: its process, ansible-playbook pid {os.getpid()}, still runs" in text
    assert "Wait for that run to finish. If that run is gone, break the lock with: ansible-playbook -i " in text
    assert "playbooks/unlock.yml" in text
    for host in hosts:
        assert served(host)["version"] == "s2"
        assert host.file(f"{LOCK}/holder.json").contains("liverun000000001")


def unlock(*args):
    """playbooks/unlock.yml without a terminal (its prompt gets no answer, as in CI)."""
    cmd, env = playbook_command(REPO / "playbooks/unlock.yml", "-i", GROUPS, *args)
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, check=False, stdin=subprocess.DEVNULL)


def test_unlock_with_a_wrong_token_leaves_the_lock_and_with_the_right_one_breaks_it(hosts, live_lock):
    report = unlock()
    text = output(report)
    assert report.returncode != 0 and "No token was given: the deploy lock was left as it is." in text
    assert "That run still goes" in text and "-e unlock_confirm=liverun000000001" in text
    wrong = unlock("-e", "unlock_confirm=liverun000000002")
    assert wrong.returncode != 0 and "The token given (liverun000000002) is not this lock's" in output(wrong)
    for host in hosts:
        assert host.file(f"{LOCK}/holder.json").contains("liverun000000001")
    right = unlock("-e", "unlock_confirm=liverun000000001")
    assert right.returncode == 0, output(right)[-3000:]
    assert output(right).count(f"Broke the deploy lock {LOCK} on ") == len(hosts)
    for host in hosts:
        assert not host.file(LOCK).exists
    again = unlock()
    assert again.returncode == 0 and output(again).count("No deploy lock on ") == len(hosts)
