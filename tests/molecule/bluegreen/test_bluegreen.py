"""Blue/green deploys of the sample app, end to end, on every target.

The steps run in file order and each builds on the one before (module-scoped fixtures):
v1 (blue), v2 (green, with a migration), a deploy while the database is down, a release whose health fails, rollback refused while the other colour is
unhealthy, a concurrent deploy refused by the lock, a broken nginx config at switch time, and a
rollback to the healthy previous release. Then the real backend's shape (tests/fixtures/tsh_backend:
a Socket.IO wrapper entry, /health without database state or release id, a slow start, uploads
under a shared path): b1, a memory refusal, a stray process on the idle port, b2, a rollback with the
uploads intact, and a hanging release that the gate ends within its timeout.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import pathlib
import re
import subprocess
import threading
import time

import pytest

from conftest import (BACKEND_VARS, REPO, build_backend, build_release, molecule_targets, output, playbook_command,
                      run_playbook, status_output, target_hosts)

# Every check looks at all targets itself (fixture `hosts`), in file order. With testinfra's
# module-scoped, parametrized `host` fixture pytest would run all checks of the first host before
# any of the second, so the second host's checks would see the state after the last step.
testinfra_hosts = []

GROUPS = str(REPO / "tests/molecule/droplet_groups.ini")
# The targets in inventory order (one with molecule --platform-name). deploy.yml runs serial: 1 in
# that order; a failure on the first host ends the rollout there.
TARGETS = tuple(molecule_targets())
FIRST = TARGETS[0]


@pytest.fixture(scope="module")
def hosts():
    return target_hosts()


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("releases")
    build_release(path, "v1")
    build_release(path, "v2")
    build_release(path, "v3-unhealthy", faults={"health": "fail"})
    return path


def on_targets(command):
    """Run a shell command in every target container."""
    for name in TARGETS:
        subprocess.run(["docker", "exec", name, "sh", "-c", command], check=True)


@contextlib.contextmanager
def fault(break_cmd, repair_cmd):
    """A fault on every target for the duration of the block, repaired even when the block fails."""
    on_targets(break_cmd)
    try:
        yield
    finally:
        on_targets(repair_cmd)


class Webhook:
    """A Slack/Discord-style webhook on the controller (deploy.yml posts from there): keeps every JSON body."""

    def __init__(self):
        self.posts = []
        posts = self.posts

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                posts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def for_version(self, version):
        return [post for post in self.posts if post["deploy"]["version"] == version]


@pytest.fixture(scope="module")
def webhook():
    hook = Webhook()
    yield hook
    hook.server.shutdown()


def deploy(build_dir, version, *extra):
    return run_playbook(REPO / "deploy.yml", "-i", GROUPS, "-e", f"release_version={version}",
                        "-e", f"deploy_build_dir={build_dir}", *extra)


def rollback(*extra):
    return run_playbook(REPO / "playbooks/rollback.yml", "-i", GROUPS, *extra)


def served(host):
    """The /health JSON that nginx serves for the API's public name on this host."""
    cmd = host.run("curl -sk --max-time 5 --resolve erp.tsh.sale:443:127.0.0.1 https://erp.tsh.sale/health")
    assert cmd.rc == 0, cmd.stderr
    return json.loads(cmd.stdout)


def gate_seconds(text):
    """The gate's own wall time from its failure message ('... attempts in 30.2 s; ...')."""
    found = re.search(r"attempts in ([0-9.]+) s;", text)
    assert found, text[-3000:]
    return float(found.group(1))


def active_link(host):
    return host.file("/etc/nginx/upstreams/tsh_erp_active.conf").linked_to


def audit(host):
    lines = host.file("/opt/tsh_erp/deploy/audit.log").content_string.splitlines()
    return [json.loads(line) for line in lines]


# 1. v1 into blue ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def step_v1(build_dir):
    # Nothing listens on port 9 (discard): the webhook is down, the deploy must still succeed.
    run = deploy(build_dir, "v1", "-e", "deploy_webhook_url=http://127.0.0.1:9/hook")
    assert run.returncode == 0, output(run)[-4000:]
    return run


def test_v1_serves_from_blue(hosts, step_v1):
    for host in hosts:
        assert active_link(host).endswith("tsh_erp_blue.conf")
        body = served(host)
        assert body["version"] == "v1" and body["color"] == "blue"
        assert body["status"] == "healthy" and body["database"]["status"] == "healthy"
        assert host.service("tsh_erp-blue").is_running
        assert host.service("tsh_erp-blue").is_enabled
        assert audit(host)[-1]["outcome"] == "success"


def test_webhook_outage_is_reported_not_fatal(step_v1):
    assert "did not accept the outcome" in output(step_v1)


def test_units_run_unprivileged_on_loopback(hosts, step_v1):
    for host in hosts:
        pid = host.check_output("systemctl show --property MainPID --value tsh_erp-blue")
        assert pid.isdigit() and int(pid) > 0, pid
        users = host.check_output(f"ps -o user= -p {pid} --ppid {pid} | sort -u")
        assert users.split() == ["tsh_erp"], users
        assert host.socket("tcp://127.0.0.1:8001").is_listening
        assert not host.socket("tcp://0.0.0.0:8001").is_listening
        env = host.file("/opt/tsh_erp/shared/env/prod.env")
        assert env.mode == 0o600 and env.user == "root"


# 2. v2 into green --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def step_v2(step_v1, build_dir, webhook):
    started = time.time()
    run = deploy(build_dir, "v2", "-e", f"deploy_webhook_url={webhook.url}",
                 "-e", '{"deploy_migration_command": "python -m app.migrate"}')
    assert run.returncode == 0, output(run)[-4000:]
    run.started = started
    return run


def test_v2_serves_from_green_and_blue_is_stopped(hosts, step_v2):
    for host in hosts:
        assert active_link(host).endswith("tsh_erp_green.conf")
        body = served(host)
        assert body["version"] == "v2" and body["color"] == "green"
        assert not host.service("tsh_erp-blue").is_running
        assert not host.service("tsh_erp-blue").is_enabled
        assert host.service("tsh_erp-green").is_enabled
        record = audit(host)[-1]
        assert record["outcome"] == "success" and record["from_color"] == "blue" and record["to_color"] == "green"
        assert {"backup", "install", "migrate", "start", "gate", "switch", "retire"} <= set(record["durations_s"])
        assert record["host_durations_s"] == {record["host"]: record["durations_s"]}


def test_pre_deploy_backup_named_with_the_release(hosts, step_v2):
    """The deploy dumped the database before it migrated, under the release id, and says which file."""
    for host in hosts:
        dumps = host.check_output("cd /opt/tsh_erp/backups && ls tsh_erp_*-pre-deploy-v2.dump").split()
        assert len(dumps) == 1, dumps
        host.run_expect([0], f"cd /opt/tsh_erp/backups && sha256sum --check --strict {dumps[0]}.sha256")
        host.run_expect([0], f"pg_restore --list /opt/tsh_erp/backups/{dumps[0]}")
        assert dumps[0] in audit(host)[-1]["backup"]
        # The verify timer's script accepts labelled dumps as the newest backup.
        host.run_expect([0], "systemctl start tsh-backup-verify.service")


def test_webhook_receives_each_outcome(step_v2, webhook):
    posts = webhook.for_version("v2")
    assert sorted(post["deploy"]["host"] for post in posts) == sorted(TARGETS)
    for post in posts:
        assert post["deploy"]["outcome"] == "success"
        assert "v2" in post["text"] and post["text"] == post["content"]


def test_static_frontends_switch_with_the_backend(hosts, step_v2):
    for host in hosts:
        for path, site in (("/var/www/tsh/consumer", "shop.tsh.sale"), ("/var/www/tsh/admin", "www.tsh.sale")):
            assert host.file(path).linked_to.endswith(f"releases/v2/static/{path.rsplit('/', 1)[1]}")
            page = host.run(f"curl -sk --max-time 5 --resolve {site}:443:127.0.0.1 https://{site}/")
            assert page.rc == 0 and "sample" in page.stdout, page.stdout


def systemd_events(host, since, *units):
    """(time, unit, message) of what systemd logged about these units since the epoch `since`."""
    args = " ".join(f"-u {unit}" for unit in units)
    lines = host.check_output(f"journalctl -o json --since @{int(since)} _PID=1 {args}").splitlines()
    events = [json.loads(line) for line in lines]
    return [(int(e["__REALTIME_TIMESTAMP"]), e.get("UNIT", ""), e["MESSAGE"]) for e in events]


def first(events, prefix):
    times = [when for when, _unit, message in events if message.startswith(prefix)]
    assert times, (prefix, events)
    return times[0]


def test_migration_ran_before_the_switch_with_the_backup_timers_paused(hosts, step_v2):
    """The migration ran once with the new release; the backup timers were paused before the
    pre-deploy backup and resumed after the migration, so no timer's pg_dump held locks a migration
    waits for."""
    for host in hosts:
        rows = host.check_output("runuser -u postgres -- psql -XAt -d tsh_erp -c 'SELECT version FROM tsh_migrations'")
        assert rows.split() == ["v2"]
        events = systemd_events(host, step_v2.started, "tsh-backup.timer", "tsh-backup-verify.timer",
                                "tsh_erp-migrate-v2.service")
        migrated = first(events, "tsh_erp-migrate-v2.service: Deactivated successfully")
        assert first(events, "Stopped tsh-backup.timer") < first(events, "Started tsh_erp-migrate-v2") < migrated
        assert first(events, "Stopped tsh-backup-verify.timer") < migrated
        assert [when for when, _u, m in events if m.startswith("Started tsh-backup.timer") and when > migrated]
        assert host.service("tsh-backup.timer").is_running and host.service("tsh-backup-verify.timer").is_running


# 3. fault "database down during a deploy": refused before anything changes ----------------
@pytest.fixture(scope="module")
def step_database_down(step_v2, build_dir, hosts):
    backups_before = [host.check_output("ls /opt/tsh_erp/backups") for host in hosts]
    with fault("systemctl stop postgresql", "systemctl start postgresql"):
        run = deploy(build_dir, "v1")
        during = [served(host) for host in hosts]
    assert [host.check_output("ls /opt/tsh_erp/backups") for host in hosts] == backups_before
    return run, during


def test_database_down_refuses_the_deploy_before_anything_changes(hosts, step_database_down):
    """Fault table, row "database down during a deploy": refused before any host changes, the serving
    colour keeps answering, and the same colour answers healthy once PostgreSQL is back."""
    run, during = step_database_down
    assert run.returncode != 0
    text = output(run)
    assert f"Deploy of v1 to {FIRST} failed in phase backup: the database tsh_erp on {FIRST} does not answer" in text
    assert "Start PostgreSQL there (systemctl start postgresql" in text and "Nothing was changed." in text
    # nginx kept routing to v2 (answering that its database is down); nothing moved.
    assert [(body["version"], body["database"]["status"]) for body in during] == [("v2", "unhealthy")] * len(hosts)
    for host in hosts:
        assert active_link(host).endswith("tsh_erp_green.conf")
        assert host.service("tsh_erp-green").is_running and not host.service("tsh_erp-blue").is_running
        assert host.file("/opt/tsh_erp/current-blue").linked_to.endswith("releases/v1")
        if host.backend.get_hostname() == FIRST:
            record = audit(host)[-1]
            assert record["outcome"] == "failed" and record["version"] == "v1" and record["failed_phase"] == "backup"
        assert host.service("tsh-backup.timer").is_running
        assert not host.file("/opt/tsh_erp/deploy/lock").exists
        # The database is back: v2 answers healthy again without a restart (within 15 s: the sample
        # app's pool may hand its first request a connection the restart closed).
        deadline = time.monotonic() + 15
        while served(host)["database"]["status"] != "healthy" and time.monotonic() < deadline:
            time.sleep(0.5)
        assert served(host)["database"]["status"] == "healthy"
        assert host.service("tsh_erp-green").is_running


# 4. an unhealthy release is refused ---------------------------------------------------------
@pytest.fixture(scope="module")
def step_unhealthy(step_v2, build_dir, webhook):
    return deploy(build_dir, "v3-unhealthy", "-e", f"deploy_webhook_url={webhook.url}")


def test_unhealthy_release_is_refused_and_v2_keeps_serving(hosts, step_unhealthy):
    """Fault table, row "unhealthy release": the gate refuses it, v2 keeps serving."""
    for host in hosts:
        assert step_unhealthy.returncode != 0
        text = output(step_unhealthy)
        assert "did not pass the health gate" in text
        # The gate's wall time is bounded by deploy_health_timeout (30 s here) whatever the app does.
        assert gate_seconds(text) <= 30 + 5, text[-2000:]
        assert '"status": "failing"' in text or "'status': 'failing'" in text or "failing" in text
        assert active_link(host).endswith("tsh_erp_green.conf")
        assert served(host)["version"] == "v2"
        assert not host.service("tsh_erp-blue").is_running
        assert host.file("/opt/tsh_erp/current-blue").linked_to.endswith("releases/v1")
        assert not host.file("/opt/tsh_erp/deploy/lock").exists
        # The rolling deploy stops at the first host that fails: later hosts keep v2 untouched.
        record = audit(host)[-1]
        if host.backend.get_hostname() == FIRST:
            assert record["outcome"] == "failed" and record["failed_phase"] == "gate"
            assert "health gate" in record["reason"]
        else:
            assert record["version"] == "v2" and record["outcome"] == "success"


def test_webhook_reports_the_failure(step_unhealthy, webhook):
    (post,) = webhook.for_version("v3-unhealthy")
    assert post["deploy"]["outcome"] == "failed" and post["deploy"]["failed_phase"] == "gate"
    assert "failed (gate:" in post["text"]


# 5. rollback refused while the other colour is unhealthy -------------------------------------
@pytest.fixture(scope="module")
def step_rollback_refused(step_unhealthy):
    faults = "/opt/tsh_erp/releases/v1/FAULTS.json"
    with fault(f"echo '{{\"health\": \"fail\"}}' > {faults}", f"rm -f {faults}"):
        return rollback()


def test_rollback_refused_when_other_colour_unhealthy(hosts, step_rollback_refused):
    for host in hosts:
        assert step_rollback_refused.returncode != 0
        assert "refused" in output(step_rollback_refused)
        assert active_link(host).endswith("tsh_erp_green.conf")
        assert served(host)["version"] == "v2"
        assert not host.service("tsh_erp-blue").is_running


# 6. a second concurrent deploy is refused by the lock ----------------------------------------
@pytest.fixture(scope="module")
def step_concurrent(step_rollback_refused, build_dir):
    cmd, env = playbook_command(REPO / "deploy.yml", "-i", GROUPS, "-e", "release_version=v1",
                                "-e", f"deploy_build_dir={build_dir}")
    first = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    # Wait (bounded) until the first deploy holds the lock on the first target.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        probe = subprocess.run(["docker", "exec", FIRST, "test", "-f",
                                "/opt/tsh_erp/deploy/lock/holder.json"], check=False)
        if probe.returncode == 0:
            break
        assert first.poll() is None, "first deploy ended before taking the lock"
        time.sleep(0.2)
    second = deploy(build_dir, "v2", "--limit", FIRST)
    first_out, _ = first.communicate(timeout=600)
    return first.returncode, first_out, second


def test_concurrent_deploy_refused_by_lock(hosts, step_concurrent):
    for host in hosts:
        first_rc, first_out, second = step_concurrent
        assert first_rc == 0, first_out[-4000:]
        assert second.returncode != 0
        assert "is held by" in output(second) and "deploying v1" in output(second)
        # The first deploy went through: v1 now serves from blue.
        assert served(host)["version"] == "v1"
        assert active_link(host).endswith("tsh_erp_blue.conf")


# 7. a broken nginx config at switch time leaves the old link ----------------------------------
@pytest.fixture(scope="module")
def step_broken_nginx(step_concurrent, build_dir):
    upstream = "/etc/nginx/upstreams/tsh_erp_green.conf"
    with fault(f"cp {upstream} /root/green.conf.bak && echo 'this is not nginx;' >> {upstream}",
               f"cp /root/green.conf.bak {upstream}"):
        return deploy(build_dir, "v2")


def test_broken_nginx_at_switch_keeps_old_link(hosts, step_broken_nginx):
    """Fault table, row "broken nginx file at the switch": the link goes back, the old colour serves."""
    for host in hosts:
        assert step_broken_nginx.returncode != 0
        assert "nginx -t failed after the switch" in output(step_broken_nginx)
        assert active_link(host).endswith("tsh_erp_blue.conf")
        assert served(host)["version"] == "v1"
        assert host.run("nginx -t").rc == 0
        if host.backend.get_hostname() == FIRST:
            assert audit(host)[-1]["failed_phase"] == "switch"


# 8. rollback to the healthy previous release ------------------------------------------------
@pytest.fixture(scope="module")
def step_rollback(step_broken_nginx):
    run = rollback()
    assert run.returncode == 0, output(run)[-4000:]
    return run


def test_rollback_to_previous_release(hosts, step_rollback):
    for host in hosts:
        assert active_link(host).endswith("tsh_erp_green.conf")
        body = served(host)
        assert body["version"] == "v2" and body["color"] == "green"
        assert not host.service("tsh_erp-blue").is_running
        assert audit(host)[-1]["operation"] == "rollback"


def test_status_reports_colours_and_deploys(step_rollback):
    run = run_playbook(REPO / "playbooks/status.yml", "-i", GROUPS)
    assert run.returncode == 0, output(run)[-3000:]
    lines = status_output(run)
    for name in TARGETS:
        mine = lines[lines.index(f"TSH ERP on {name} (app: {name}; db: {name})") + 1:]
        assert mine[0] == "Serving             green  release v2  (link green, nginx routes to green)", mine
        assert mine[2].split()[:2] == ["blue", "inactive"] and mine[2].split()[3] == "v1", mine
        assert mine[3].split()[:7] == ["green", "*", "active", "enabled", "v2", "200", "healthy"], mine
        assert "Lock                none" in mine
        assert "  rollback  v2  blue -> green  success" in next(line for line in mine if line.startswith("Last deploys"))
    shown = status_output(run_playbook(REPO / "playbooks/status.yml", "-i", GROUPS, "-e", "status_format=json"))
    for cell in shown["cells"]:
        assert cell["serving"] == {"colour": "green", "release": "v2", "link": "green", "routed": "green"}
        assert cell["lock"] is None and cell["deploys"][-1]["operation"] == "rollback"


# 9. the real backend's shape -----------------------------------------------------------------
@pytest.fixture(scope="module")
def backend_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("backend-releases")
    build_backend(path, "b1")
    build_backend(path, "b2")
    build_backend(path, "b3-hang", faults={"health": "hang"})
    return path


def deploy_backend(build_dir, version, *extra):
    return deploy(build_dir, version, "-e", BACKEND_VARS, *extra)


def api(host, method, path, data=None):
    """An HTTPS request to the API's public name through nginx on the host: (status, body, headers)."""
    body = f"--data-binary {data!r} " if data is not None else ""
    cmd = host.run(f"curl -sk --max-time 5 -X {method} {body}-D /dev/stderr -o /dev/stdout -w '\\n%{{http_code}}' "
                   f"--resolve erp.tsh.sale:443:127.0.0.1 https://erp.tsh.sale{path}")
    assert cmd.rc == 0, cmd.stderr
    text, _, status = cmd.stdout.rpartition("\n")
    return int(status), text, cmd.stderr.lower()


@pytest.fixture(scope="module")
def step_b1(step_rollback, backend_dir):
    """Green serves sample v2; the operator switches the inventory to the real backend's settings."""
    env = json.dumps({"tsh_app_extra_env": {"TSH_FIXTURE_START_DELAY": "8"}})
    applied = run_playbook(pathlib.Path(__file__).with_name("apply_tsh_app.yml"), "-e", BACKEND_VARS, "-e", env)
    assert applied.returncode == 0, output(applied)[-3000:]
    # What a run killed inside its switch leaves (tsh_switch writes its record, then moves the link;
    # the kill lands before nginx reloads): the link names blue, nginx still serves green. Boot lags
    # behind too (green disabled). Trusting the link, a deploy would stop green as "the idle colour".
    on_targets("printf '%s\\n' '{\"from\": \"green\", \"to\": \"blue\", \"version\": \"killed\"}' "
               "> /opt/tsh_erp/deploy/switch.json && ln -sfn tsh_erp_blue.conf /etc/nginx/upstreams/tsh_erp_active.conf"
               " && systemctl disable tsh_erp-green")
    run = deploy_backend(backend_dir, "b1")
    assert run.returncode == 0, output(run)[-4000:]
    return run


def test_interrupted_switch_is_repaired_before_the_deploy(hosts, step_b1):
    text = " ".join(output(step_b1).split())
    assert ("Found a switch from green to blue (killed) interrupted before nginx reloaded (the link named blue, "
            "nginx serves green): the link names green again; traffic did not move.") in text
    # serial: 1, so the task runs once per app host, each in its own batch.
    boots = [part.split("TASK [", 1)[0] for part in text.split("TASK [Start the serving colour at boot]")[1:]]
    assert sum(boot.count("changed: [") for boot in boots) == len(hosts), boots
    for host in hosts:
        assert not host.file("/opt/tsh_erp/deploy/switch.json").exists


def test_backend_serves_from_blue_with_its_own_health(hosts, step_b1):
    for host in hosts:
        assert active_link(host).endswith("tsh_erp_blue.conf")
        status, text, headers = api(host, "GET", "/health")
        body = json.loads(text)
        assert status == 200 and body["status"] == "healthy" and body["version"] == "1.0.0"
        assert "cache-control: public, max-age=5" in headers
        assert "x-tsh-color: blue" in headers
        release = host.file("/opt/tsh_erp/releases/b1")
        assert {"app", "config", "database", "requirements.txt"} <= set(release.listdir())
        assert not {"mobile", "docs"} & set(release.listdir())
        assert host.file("/opt/tsh_erp/releases/b1/app/images").linked_to == "/opt/tsh_erp/shared/app/images"
        assert host.file("/opt/tsh_erp/shared/app/images/placeholder.txt").exists


def test_uploads_are_written_to_the_shared_path(hosts, step_b1):
    for host in hosts:
        status, text, _ = api(host, "POST", "/api/images/upload-b1.png", data="uploaded in b1")
        assert status == 200, text
        shared = host.file("/opt/tsh_erp/shared/app/images/upload-b1.png")
        assert shared.content_string == "uploaded in b1" and shared.user == "tsh_erp"
        # The rest of the release stays read-only to the service.
        assert host.run("runuser -u tsh_erp -- touch /opt/tsh_erp/releases/b1/app/x").rc != 0


@pytest.fixture(scope="module")
def step_memory_refused(step_b1, backend_dir):
    return deploy_backend(backend_dir, "b2", "-e", "deploy_memory_margin_mb=100000000")


def test_memory_preflight_refuses_before_the_idle_colour_starts(hosts, step_memory_refused):
    text = output(step_memory_refused)
    assert step_memory_refused.returncode != 0
    assert "Not enough memory to start tsh_erp-green beside tsh_erp-blue" in text
    assert "deploy_memory_check: false" in text
    for host in hosts:
        assert active_link(host).endswith("tsh_erp_blue.conf")
        assert not host.service("tsh_erp-green").is_running
    assert audit(hosts[0])[-1]["failed_phase"] == "start"


STRAY = ("import http.server as h\n"
         "class H(h.BaseHTTPRequestHandler):\n"
         "    def do_GET(self):\n"
         "        self.send_response(200); self.end_headers(); self.wfile.write(b'{\"status\": \"healthy\"}')\n"
         "h.HTTPServer(('127.0.0.1', 8002), H).serve_forever()\n")


@pytest.fixture(scope="module")
def step_stray(step_memory_refused, backend_dir):
    """A leftover process answers 'healthy' on green's port: the gate must not take it for b2."""
    subprocess.run(["docker", "exec", FIRST, "sh", "-c", f"cat > /root/stray.py <<'EOF'\n{STRAY}EOF"], check=True)
    subprocess.run(["docker", "exec", "-d", FIRST, "python3", "/root/stray.py"], check=True)
    try:
        deadline = time.monotonic() + 20
        while subprocess.run(["docker", "exec", FIRST, "curl", "-sf", "http://127.0.0.1:8002/health"],
                             capture_output=True, check=False).returncode != 0:
            assert time.monotonic() < deadline, "the stray process did not start"
            time.sleep(0.2)
        stray_pid = subprocess.run(["docker", "exec", FIRST, "pgrep", "-f", "/root/stray.py"],
                                   capture_output=True, text=True, check=True).stdout.split()[0]
        return stray_pid, deploy_backend(backend_dir, "b2", "-e", "deploy_health_timeout=15")
    finally:
        subprocess.run(["docker", "exec", FIRST, "pkill", "-f", "/root/stray.py"], check=True)


def test_stray_process_on_the_idle_port_is_not_the_new_release(hosts, step_stray):
    stray_pid, run = step_stray
    text = output(run)
    assert run.returncode != 0
    assert "did not pass the health gate" in text
    assert f"held by pid {stray_pid}" in text, text[-3000:]
    assert gate_seconds(text) <= 15 + 5
    for host in hosts:
        assert active_link(host).endswith("tsh_erp_blue.conf")
        assert api(host, "GET", "/health")[0] == 200


@pytest.fixture(scope="module")
def step_b2(step_stray, backend_dir):
    run = deploy_backend(backend_dir, "b2")
    assert run.returncode == 0, output(run)[-4000:]
    return run


def test_b2_serves_from_green_and_uploads_survive(hosts, step_b2):
    for host in hosts:
        assert active_link(host).endswith("tsh_erp_green.conf")
        status, text, headers = api(host, "GET", "/images/upload-b1.png")
        assert status == 200 and text == "uploaded in b1"
        assert "x-tsh-color: green" in headers
        assert api(host, "POST", "/api/images/upload-b2.png", data="uploaded in b2")[0] == 200


@pytest.fixture(scope="module")
def step_backend_rollback(step_b2):
    run = rollback("-e", BACKEND_VARS)
    assert run.returncode == 0, output(run)[-4000:]
    return run


def test_rollback_keeps_the_uploads_of_both_releases(hosts, step_backend_rollback):
    for host in hosts:
        assert active_link(host).endswith("tsh_erp_blue.conf")
        for name in ("upload-b1.png", "upload-b2.png"):
            status, text, headers = api(host, "GET", f"/images/{name}")
            assert status == 200 and text == f"uploaded in {name[7:9]}"
            assert "x-tsh-color: blue" in headers


@pytest.fixture(scope="module")
def step_hang(step_backend_rollback, backend_dir):
    return deploy_backend(backend_dir, "b3-hang", "-e", "deploy_health_timeout=15")


def test_hanging_release_fails_within_the_timeout(hosts, step_hang):
    text = output(step_hang)
    assert step_hang.returncode != 0
    assert "did not pass the health gate within 15 s" in text
    assert gate_seconds(text) <= 15 + 5
    for host in hosts:
        assert active_link(host).endswith("tsh_erp_blue.conf")
        assert api(host, "GET", "/health")[0] == 200
