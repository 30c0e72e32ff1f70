"""More than one machine: a db host, two app hosts and a web host provisioned by site.yml, then
deploys rolled through the app hosts under load, a release failing on the second app host only,
a deploy to part of the app hosts refused, and a rollback. Seen from where each part's users are.

The steps run in file order and each builds on the one before (module-scoped fixtures).
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from conftest import REPO, build_release, output, run_playbook, scenario_name, status_output

testinfra_hosts = []

NET = os.environ.get("TSH_MULTIHOST_NET", "10.213.7")
PREFIX = scenario_name()
DB, APP1, APP2, WEB = (f"{PREFIX}-{name}" for name in ("db", "app1", "app2", "web"))
ADDRESS = {DB: f"{NET}.10", APP1: f"{NET}.21", APP2: f"{NET}.22", WEB: f"{NET}.30"}
APPS = (APP1, APP2)
PORTS = {"blue": 8001, "green": 8002}


def sh(container, command, check=True):
    """Run a shell command in a container; return its stdout (stripped)."""
    run = subprocess.run(["docker", "exec", container, "bash", "-c", command],
                         capture_output=True, text=True, check=False)
    if check:
        assert run.returncode == 0, f"{container}: {command}: {run.stdout} {run.stderr}"
    return run.stdout.strip()


def tcp_open(source, target, port):
    """Whether source can open a TCP connection to target's private address on port within 3 s."""
    run = subprocess.run(["docker", "exec", source, "timeout", "3", "bash", "-c",
                          f"exec 3<>/dev/tcp/{ADDRESS[target]}/{port}"], capture_output=True, check=False)
    return run.returncode == 0


def served(path="/health"):
    """What nginx on the web host answers for the API's public name."""
    return json.loads(sh(WEB, f"curl -sk --max-time 5 --resolve erp.tsh.sale:443:127.0.0.1 https://erp.tsh.sale{path}"))


def served_by_both_app_hosts(requests=20):
    """/health through nginx `requests` times; nginx must have spread them over both app hosts."""
    bodies = [served() for _ in range(requests)]
    hosts = {body["host"] for body in bodies}
    assert hosts == set(APPS), hosts
    return bodies


def active_link():
    return sh(WEB, "readlink /etc/nginx/upstreams/tsh_erp_active.conf")


def unit(host, name, verb="is-active"):
    """systemctl's answer (is-active/is-enabled exit non-zero for inactive/disabled)."""
    return sh(host, f"systemctl {verb} {name}", check=False)


def audit(host):
    return [json.loads(line) for line in sh(host, "cat /opt/tsh_erp/deploy/audit.log").splitlines()]


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("releases")
    build_release(path, "v1")
    build_release(path, "v2")
    build_release(path, "v3-bad-on-app2", faults={"health": "fail", "only_on": [APP2]})
    return path


def deploy(build_dir, version, *extra):
    return run_playbook(REPO / "deploy.yml", "-e", f"release_version={version}",
                        "-e", f"deploy_build_dir={build_dir}", *extra)


# Provisioned by site.yml (molecule converge + idempotence) ---------------------------------------
def test_postgres_listens_on_loopback_and_its_private_address_only():
    listening = sh(DB, "ss -Htln 'sport = :5432' | awk '{print $4}' | sort").split()
    assert listening == sorted([f"{ADDRESS[DB]}:5432", "127.0.0.1:5432"]), listening


def test_database_port_open_to_the_app_hosts_only():
    for app in APPS:
        assert tcp_open(app, DB, 5432), app
    assert not tcp_open(WEB, DB, 5432)


def test_upstream_files_list_both_app_hosts():
    for colour, port in PORTS.items():
        text = sh(WEB, f"cat /etc/nginx/upstreams/tsh_erp_{colour}.conf")
        servers = re.findall(r"^\s*server\s+(\S+);", text, re.MULTILINE)
        assert servers == [f"{ADDRESS[APP1]}:{port}", f"{ADDRESS[APP2]}:{port}"], text


def test_only_the_web_host_runs_nginx_and_only_the_db_host_postgres():
    assert unit(WEB, "nginx") == "active"
    assert unit(DB, "postgresql") == "active"
    for host in (DB, *APPS):
        assert unit(host, "nginx") != "active", host
    for host in (WEB, *APPS):
        assert unit(host, "postgresql") != "active", host


# 1. v1: the first deploy across both app hosts ------------------------------------------------------
@pytest.fixture(scope="module")
def step_v1(build_dir):
    run = deploy(build_dir, "v1")
    assert run.returncode == 0, output(run)[-4000:]
    return run


def test_v1_serves_from_blue_on_both_app_hosts(step_v1):
    assert active_link() == "tsh_erp_blue.conf"
    for body in served_by_both_app_hosts():
        assert body["version"] == "v1" and body["color"] == "blue" and body["status"] == "healthy"


def test_colours_listen_on_the_private_address_only(step_v1):
    for app in APPS:
        listening = sh(app, "ss -Htln 'sport = :8001' | awk '{print $4}' | sort -u").split()
        assert listening == [f"{ADDRESS[app]}:8001"], (app, listening)


def test_app_ports_open_to_the_web_host_only(step_v1):
    for app in APPS:
        assert tcp_open(WEB, app, 8001), app
        assert not tcp_open(DB, app, 8001), app
    assert not tcp_open(APP2, APP1, 8001)


def test_app_hosts_reach_the_database_over_tls(step_v1):
    rows = sh(DB, "runuser -u postgres -- psql -AXqt -d tsh_erp -c \"SELECT DISTINCT host(a.client_addr) || ' ' || s.ssl "
                  "FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.usename = 'tsh_erp'\"").splitlines()
    assert sorted(rows) == sorted(f"{ADDRESS[app]} true" for app in APPS), rows


def test_pre_deploy_backup_runs_once_on_the_db_host(step_v1):
    dumps = sh(DB, "cd /opt/tsh_erp/backups && ls tsh_erp_*-pre-deploy-v1.dump").split()
    assert len(dumps) == 1, dumps
    for app in APPS:
        assert sh(app, "ls /opt/tsh_erp/backups/*pre-deploy*", check=False) == "", app


# 2. v2 rolled through the app hosts under load ---------------------------------------------------
@pytest.fixture(scope="module")
def load_client():
    """hey on the db host (a client on the network like any other), sending to the web host."""
    sh(DB, "command -v hey >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hey >/dev/null")
    sh(DB, f"grep -q erp.tsh.sale /etc/hosts || echo '{ADDRESS[WEB]} erp.tsh.sale' >> /etc/hosts")
    return DB


@pytest.fixture(scope="module")
def step_v2(step_v1, build_dir, load_client):
    sh(load_client, "rm -f /tmp/hey.out")
    subprocess.run(["docker", "exec", "-d", load_client, "sh", "-c",
                    "hey -z 600s -c 4 -q 10 https://erp.tsh.sale/health > /tmp/hey.out 2>&1"], check=True)
    sh(load_client, "for i in $(seq 50); do pgrep -x hey >/dev/null && exit 0; sleep 0.1; done; exit 1")
    run = deploy(build_dir, "v2")
    sh(load_client, "pkill -INT -x hey; for i in $(seq 100); do pgrep -x hey >/dev/null || exit 0; sleep 0.1; done; exit 1")
    report = sh(load_client, "cat /tmp/hey.out")
    assert run.returncode == 0, output(run)[-4000:]
    return run, report


def test_v2_rolled_out_without_a_failed_request(step_v2):
    run, report = step_v2
    codes = {int(c): int(n) for c, n in re.findall(r"\[(\d{3})\]\s+(\d+) responses", report)}
    errors = sum(int(n) for n in re.findall(r"\[(\d+)\]\s+Get ", report))
    assert codes.get(200, 0) > 100, report
    assert set(codes) == {200} and errors == 0, report
    text = output(run)
    assert "app host 1 of 2" in text and "app host 2 of 2" in text


def test_v2_serves_from_green_everywhere_and_blue_is_stopped(step_v2):
    assert active_link() == "tsh_erp_green.conf"
    for body in served_by_both_app_hosts():
        assert body["version"] == "v2" and body["color"] == "green"
    for app in APPS:
        assert unit(app, "tsh_erp-blue") != "active"
        assert unit(app, "tsh_erp-blue", "is-enabled") == "disabled"
        assert unit(app, "tsh_erp-green", "is-enabled") == "enabled"
        record = audit(app)[-1]
        assert record["outcome"] == "success" and record["version"] == "v2"
        assert record["hosts"] == list(APPS) and record["from_color"] == "blue" and record["to_color"] == "green"
        # Every app host's phases: the first backs up and migrates, the last switches and retires.
        by_host = record["host_durations_s"]
        assert list(by_host) == list(APPS)
        assert {"backup", "install", "migrate", "start", "gate"} <= set(by_host[APPS[0]])
        assert "backup" not in by_host[APPS[-1]] and {"switch", "retire"} <= set(by_host[APPS[-1]])


def test_static_frontends_switch_on_the_web_host(step_v2):
    for path, site in (("/var/www/tsh/consumer", "shop.tsh.sale"), ("/var/www/tsh/admin", "www.tsh.sale")):
        assert sh(WEB, f"readlink {path}").endswith(f"releases/v2/static/{path.rsplit('/', 1)[1]}")
        page = sh(WEB, f"curl -sk --max-time 5 --resolve {site}:443:127.0.0.1 https://{site}/")
        assert "sample" in page, page


def test_the_lock_lives_on_the_web_host_and_is_free(step_v2):
    assert sh(WEB, "test -d /opt/tsh_erp/deploy && test ! -e /opt/tsh_erp/deploy/lock && echo free") == "free"


# 3. A deploy to part of the app hosts is refused ------------------------------------------------
@pytest.fixture(scope="module")
def step_partial(step_v2, build_dir):
    return deploy(build_dir, "v3-bad-on-app2", "--limit", APP1)


def test_deploy_to_part_of_the_app_hosts_is_refused(step_partial):
    assert step_partial.returncode != 0
    assert "deploy without --limit" in output(step_partial)
    assert active_link() == "tsh_erp_green.conf"
    assert unit(APP1, "tsh_erp-blue") != "active"
    assert sh(APP1, "readlink /opt/tsh_erp/current-blue").endswith("releases/v1")


@pytest.fixture(scope="module")
def step_two_web_hosts(step_partial, build_dir, tmp_path_factory):
    extra = tmp_path_factory.mktemp("inventory") / "second_web.ini"
    extra.write_text(f"[web]\n{PREFIX}-web2 ansible_connection=local\n", encoding="utf-8")
    return deploy(build_dir, "v3-bad-on-app2", "-i", str(extra))


def test_a_second_web_host_is_refused(step_two_web_hosts):
    """Only one web host's link would switch: refused before any app host changes."""
    assert step_two_web_hosts.returncode != 0
    assert "a deploy switches nginx's link on one web host only" in output(step_two_web_hosts)
    assert active_link() == "tsh_erp_green.conf"
    assert unit(APP1, "tsh_erp-blue") != "active"
    assert sh(WEB, "test ! -e /opt/tsh_erp/deploy/lock && echo free") == "free"


# 4. A release failing only on the second app host -------------------------------------------------
@pytest.fixture(scope="module")
def step_bad_on_app2(step_two_web_hosts, build_dir):
    return deploy(build_dir, "v3-bad-on-app2")


def test_failure_on_the_second_app_host_leaves_both_as_they_were(step_bad_on_app2):
    assert step_bad_on_app2.returncode != 0
    text = output(step_bad_on_app2)
    assert f"to {APP2} failed in phase gate" in text, text[-3000:]
    assert active_link() == "tsh_erp_green.conf"
    assert served()["version"] == "v2"
    for app in APPS:
        # The first app host had started v3 in blue; it is stopped and blue points at v1 again.
        assert unit(app, "tsh_erp-blue") != "active", app
        assert sh(app, "readlink /opt/tsh_erp/current-blue").endswith("releases/v1"), app
        assert unit(app, "tsh_erp-green") == "active", app
        record = audit(app)[-1]
        assert record["outcome"] == "failed" and record["failed_phase"] == "gate", record
    assert sh(WEB, "test ! -e /opt/tsh_erp/deploy/lock && echo free") == "free"


# 5. Rollback across the app hosts ----------------------------------------------------------------
@pytest.fixture(scope="module")
def step_rollback(step_bad_on_app2):
    run = run_playbook(REPO / "playbooks/rollback.yml")
    assert run.returncode == 0, output(run)[-4000:]
    return run


def test_rollback_moves_every_app_host_back_to_v1(step_rollback):
    assert active_link() == "tsh_erp_blue.conf"
    for body in served_by_both_app_hosts():
        assert body["version"] == "v1" and body["color"] == "blue"
    for app in APPS:
        assert unit(app, "tsh_erp-green") != "active", app
        assert audit(app)[-1]["operation"] == "rollback"
    # The frontends staged on the web host by v1's deploy switch back with the backend.
    assert sh(WEB, "readlink /var/www/tsh/consumer").endswith("releases/v1/static/consumer")


def test_status_reads_the_link_from_the_web_host(step_rollback):
    """One block: the link, lock and certificate from the web host, each app host's colours, the
    backup from the db host."""
    run = run_playbook(REPO / "playbooks/status.yml")
    assert run.returncode == 0, output(run)[-3000:]
    lines = status_output(run)
    assert lines[0] == f"TSH ERP on {WEB} (app: {APP1}, {APP2}; db: {DB})", lines
    assert lines[1] == "Serving             blue  release v1  (link blue, nginx routes to blue)", lines
    for app in APPS:
        assert any(line.split()[:4] == [app, "blue", "*", "active"] for line in lines), lines
    assert "Lock                none" in lines
    shown = status_output(run_playbook(REPO / "playbooks/status.yml", "-e", "status_format=json"))
    (cell,) = shown["cells"]
    assert (cell["web_host"], cell["db_host"], sorted(cell["app"])) == (WEB, DB, sorted(APPS))
    assert cell["serving"] == {"colour": "blue", "release": "v1", "link": "blue", "routed": "blue"}
    assert cell["certificate"]["days_left"] > 21 and cell["backup"]["files"], cell
    assert cell["deploys"][-1]["operation"] == "rollback"


# 6. Restore: the database host stops and starts the app hosts, under the web host's lock ----------
def test_restore_stops_and_starts_the_app_hosts_under_the_lock(step_rollback):
    backup = run_playbook(REPO / "playbooks/backup.yml")
    assert backup.returncode == 0, output(backup)[-3000:]
    started = {app: sh(app, "systemctl show -p ActiveEnterTimestampMonotonic --value tsh_erp-blue") for app in APPS}
    run = run_playbook(REPO / "playbooks/restore.yml", "-e", "backups_restore_confirm=tsh_erp")
    assert run.returncode == 0, output(run)[-3000:]
    assert "started after the restore: tsh_erp-blue.service" in output(run)
    for app in APPS:
        assert unit(app, "tsh_erp-blue") == "active", app
        assert sh(app, "systemctl show -p ActiveEnterTimestampMonotonic --value tsh_erp-blue") != started[app], app
    assert sh(WEB, "test ! -e /opt/tsh_erp/deploy/lock && echo free") == "free"
    # restore.yml ended only once each app host's active colour passed the deploy's health gate.
    for app in APPS:
        assert f"{app} tsh_erp-blue (v1)" in output(run), app
    assert served()["version"] == "v1"
