"""Backups proven by using them: dumps that check out, pruning, a restore check that catches damage
and alerts, and a deleted row brought back with playbooks/restore.yml."""

import json
import os
import pathlib
import shlex
import time
import uuid

import pytest
import testinfra

from conftest import REPO, output, run_playbook

testinfra_hosts = ["ansible://targets"]

DIR = "/opt/tsh_erp/backups"
ALERTS = "/var/log/tsh-test-alerts.log"
INVENTORY = pathlib.Path(__file__).with_name("inventory.ini")
BACKUP = REPO / "playbooks/backup.yml"
RESTORE = REPO / "playbooks/restore.yml"


def sql(host, query, db="tsh_erp"):
    return host.check_output(f"runuser -u postgres -- psql -d {db} -AXqt -v ON_ERROR_STOP=1 -c {shlex.quote(query)}")


def dumps(host, prefix="tsh_erp", ext="dump"):
    """Dump file names of one kind, oldest first (by the stamp in the name)."""
    out = host.check_output(f"find {DIR} -maxdepth 1 -type f -name '{prefix}_*.{ext}' -printf '%f\\n' | sort")
    return out.splitlines()


def backup_now(host):
    run = host.run("systemctl start tsh-backup.service")
    assert run.rc == 0, host.check_output("journalctl -u tsh-backup.service -n 20 --no-pager -o cat")
    return dumps(host)[-1]


def wait_for_alert(host, unit):
    """The alert unit runs asynchronously after the failure: wait (bounded) for its line."""
    return host.run(f"timeout 30 bash -c 'until grep -q {unit} {ALERTS} 2>/dev/null; do sleep 0.5; done'").rc == 0


def ensure_orders(host):
    """A table owned by the application role, with rows, as the application would leave it."""
    if sql(host, "SELECT count(*) FROM pg_tables WHERE tablename = 'orders'") == "0":
        sql(host, "CREATE TABLE orders (id serial PRIMARY KEY, note text NOT NULL); ALTER TABLE orders OWNER TO tsh_erp; "
                  "INSERT INTO orders (note) VALUES ('first'), ('second')")


@pytest.fixture(scope="module", autouse=True)
def app_data(host):
    ensure_orders(host)


_CHECK = {}


def test_check_mode_on_a_converged_host_changes_nothing(host):
    """--check --diff of the scenario's own converge reports no change and fails nowhere."""
    if not _CHECK:
        _CHECK["run"] = run_playbook(REPO / "molecule/backups/converge.yml", "--check", "--diff")
    run = _CHECK["run"]
    assert run.returncode == 0, output(run)[-3000:]
    recap = output(run).split("PLAY RECAP", 1)[1]
    assert recap.split(f"{host.backend.get_hostname()} : ", 1)[1].split()[1] == "changed=0"


def test_timers_scheduled_daily_persistent_randomised(host):
    for timer in ("tsh-backup.timer", "tsh-backup-verify.timer"):
        props = dict(
            line.split("=", 1)
            for line in host.check_output(
                f"systemctl show {timer} -p ActiveState -p UnitFileState -p Persistent -p RandomizedDelayUSec "
                "-p NextElapseUSecRealtime"
            ).splitlines()
        )
        assert props["ActiveState"] == "active"
        assert props["UnitFileState"] == "enabled"
        assert props["Persistent"] == "yes"
        assert props["RandomizedDelayUSec"] == "30min"
        assert props["NextElapseUSecRealtime"]


def test_backup_writes_checked_private_dumps(host):
    name = backup_now(host)
    stamp = name.removeprefix("tsh_erp_").removesuffix(".dump")
    assert host.run(f"cd {DIR} && sha256sum --check --strict {name}.sha256 globals_{stamp}.sql.sha256").rc == 0
    listing = host.check_output(f"pg_restore --list {DIR}/{name}")
    assert "TABLE public orders tsh_erp" in listing
    assert "CREATE ROLE tsh_erp" in host.check_output(f"cat {DIR}/globals_{stamp}.sql")
    directory = host.file(DIR)
    assert (directory.user, directory.group, directory.mode) == ("postgres", "postgres", 0o700)
    for path in (f"{DIR}/{name}", f"{DIR}/{name}.sha256", f"{DIR}/globals_{stamp}.sql"):
        f = host.file(path)
        assert (f.user, f.mode) == ("postgres", 0o600), path
    assert host.check_output(f"find {DIR} -perm /o+rwx -o -perm /g+rwx") == ""
    assert host.check_output(f"find {DIR} -name '*.partial'") == ""
    status = json.loads(host.file("/var/lib/tsh-backups/backup.json").content_string)
    assert status["result"] == "success"
    assert status["stamp"] == stamp
    assert name in status["files"]


def test_offsite_copy_after_each_backup(host):
    name = backup_now(host)
    copy = host.run(f"cd /var/tmp/tsh-offsite && sha256sum --check --strict {name}.sha256")
    assert copy.rc == 0, copy.stderr


def test_labelled_backup_names_every_file(host):
    """tsh-backup --label (deploy.yml's pre-deploy dump) puts the label after the stamp of every file;
    a label that is not a plain name is refused before anything is written."""
    # From root's home, as deploy.yml over SSH runs it: postgres cannot enter the caller's directory.
    run = host.run("cd /root && runuser -u postgres -- /usr/local/sbin/tsh-backup --no-prune --label pre-deploy-2026.11.29-1")
    assert run.rc == 0, run.stderr
    # (Not dumps()[-1]: the previous check's dump may carry the same second, and sorts after it.)
    (name,) = [d for d in dumps(host) if d.endswith("-pre-deploy-2026.11.29-1.dump")]
    stamp = name.removeprefix("tsh_erp_").removesuffix(".dump")
    assert host.run(f"cd {DIR} && sha256sum --check --strict {name}.sha256 globals_{stamp}.sql.sha256").rc == 0
    status = json.loads(host.file("/var/lib/tsh-backups/backup.json").content_string)
    assert status["label"] == "pre-deploy-2026.11.29-1" and name in status["files"]
    before = host.check_output(f"ls -A {DIR}")
    bad = host.run("runuser -u postgres -- /usr/local/sbin/tsh-backup --label ../../tmp/x")
    assert bad.rc != 0 and "label '../../tmp/x' must be letters, digits" in bad.stderr
    assert host.check_output(f"ls -A {DIR}") == before


def fake_dump(host, name, age):
    """A dump-like file with a matching checksum, its mtime set age ago."""
    host.run_expect([0], f"cd {DIR} && head -c 4096 /dev/urandom > {name} && sha256sum {name} > {name}.sha256 "
                    f"&& chown postgres:postgres {name} {name}.sha256 && chmod 0600 {name} {name}.sha256 "
                    f"&& touch -d '{age}' {name} {name}.sha256")


def prune(host):
    return host.check_output("runuser -u postgres -- /usr/local/sbin/tsh-backup --prune")


def test_retention_prunes_old_dumps_and_keeps_the_rest(host):
    newest = backup_now(host)
    fake_dump(host, "tsh_erp_20260101T023000Z.dump", "10 days ago")
    fake_dump(host, "tsh_erp_20260102T023000Z.dump", "8 days ago")
    fake_dump(host, "tsh_erp_20260103T023000Z.dump", "6 days ago")
    fake_dump(host, "globals_20260101T023000Z.sql", "10 days ago")
    log = prune(host)
    assert "pruned tsh_erp_20260101T023000Z.dump" in log
    remaining = dumps(host)
    assert "tsh_erp_20260101T023000Z.dump" not in remaining
    assert "tsh_erp_20260102T023000Z.dump" not in remaining
    assert "tsh_erp_20260103T023000Z.dump" in remaining
    assert newest in remaining
    assert "globals_20260101T023000Z.sql" not in dumps(host, "globals", "sql")
    assert not host.file(f"{DIR}/tsh_erp_20260101T023000Z.dump.sha256").exists


def test_retention_never_deletes_the_newest_good_dump(host):
    """With every file aged past retention (a clock jump), the newest dump whose checksum matches
    stays; a newer-named but damaged one does not count and goes."""
    newest = backup_now(host)
    fake_dump(host, "tsh_erp_20991231T000000Z.dump", "now")
    host.run_expect([0], f"echo damage >> {DIR}/tsh_erp_20991231T000000Z.dump")
    host.run_expect([0], f"find {DIR} -type f -exec touch -d '40 days ago' {{}} +")
    log = prune(host)
    assert f"keeping {newest}" in log
    assert dumps(host) == [newest]
    assert len(dumps(host, "globals", "sql")) == 1


def test_refuses_to_start_when_disk_is_nearly_full(host):
    """A 1 MB file system over the backup directory: the service fails with a clear line and alerts."""
    host.run_expect([0], f"mount -t tmpfs -o size=1m,mode=0700,uid=postgres,gid=postgres tsh-test-full {DIR}")
    try:
        run = host.run("systemctl start tsh-backup.service")
        log = host.check_output("journalctl -u tsh-backup.service -n 5 --no-pager -o cat")
        assert run.rc != 0
        assert "refusing to start: only 1 MB free" in log
        assert "below backups_min_free_mb (1024 MB)" in log
        assert host.check_output(f"ls -A {DIR}") == ""
        assert wait_for_alert(host, "tsh-backup.service")
    finally:
        host.run_expect([0], f"umount {DIR}")


def test_verify_restores_the_newest_dump(host):
    backup_now(host)
    run = host.run("systemctl start tsh-backup-verify.service")
    log = host.check_output("journalctl -u tsh-backup-verify.service -n 5 --no-pager -o cat")
    assert run.rc == 0, log
    assert "restores: 1 tables, check query returned 1 rows" in log
    assert sql(host, "SELECT count(*) FROM pg_database WHERE datname LIKE 'tsh_verify_%'", db="postgres") == "0"
    status = json.loads(host.file("/var/lib/tsh-backups/verify.json").content_string)
    assert status["result"] == "success"
    assert dumps(host)[-1] in status["files"]


def test_damaged_dump_fails_verify_loudly_and_alerts(host):
    name = backup_now(host)
    before = host.file("/var/lib/tsh-backups/verify.json").content_string
    host.run_expect([0], f"rm -f {ALERTS}")
    host.run_expect([0], f"printf 'XXXXXXXX' | dd of={DIR}/{name} bs=1 seek=200 conv=notrunc status=none")
    run = host.run("systemctl start tsh-backup-verify.service")
    assert run.rc != 0
    log = host.check_output("journalctl -u tsh-backup-verify.service -n 5 --no-pager -o cat")
    assert f"FAILED: {name} does not match its checksum" in log
    assert wait_for_alert(host, "tsh-backup-verify.service")
    assert host.file("/var/lib/tsh-backups/verify.json").content_string == before


_RESTORE = {}


def restore_story():
    """Once for both targets: a row is inserted, backed up with backup.yml, deleted, then
    restore.yml runs without and with confirmation. Returns the runs and what each target looked
    like after each step."""
    if _RESTORE:
        return _RESTORE
    targets = testinfra.get_hosts(["ansible://targets"], ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])
    inventory = ("-i", str(INVENTORY))
    marker = f"precious-{uuid.uuid4()}"
    count = f"SELECT count(*) FROM orders WHERE note = '{marker}'"
    for t in targets:
        ensure_orders(t)
        for colour in ("blue", "green"):
            t.run_expect([0], "printf '[Service]\\nExecStart=/bin/sleep infinity\\n' "
                         f"> /etc/systemd/system/tsh_erp-{colour}.service")
        t.run_expect([0], "systemctl daemon-reload")
        if t.backend.get_hostname().endswith("debian12"):
            # Blue runs: it is stopped for the restore and started again.
            t.run_expect([0], "systemctl start tsh_erp-blue.service")
        else:
            # Nothing runs, but tsh_app's fact says green is the active colour: green starts after.
            t.run_expect([0], "mkdir -p /etc/ansible/facts.d && "
                         "echo '{\"active_color\": \"green\"}' > /etc/ansible/facts.d/tsh_erp.fact")
        sql(t, f"INSERT INTO orders (note) VALUES ('{marker}')")
    _RESTORE["total"] = {t.backend.get_hostname(): sql(t, "SELECT count(*) FROM orders") for t in targets}
    _RESTORE["backup"] = run_playbook(BACKUP, *inventory)
    for t in targets:
        sql(t, f"DELETE FROM orders WHERE note = '{marker}'")
    _RESTORE["refused"] = run_playbook(RESTORE, *inventory)
    _RESTORE["after_refused"] = {t.backend.get_hostname(): sql(t, count) for t in targets}
    # A deploy holds the lock (as lock_acquire.yml writes it): the confirmed restore must wait.
    holder = json.dumps({"holder": "ci@runner", "version": "v9", "operation": "deploy", "started": "now",
                         "started_epoch": int(time.time()), "token": "x"})
    units = "systemctl is-active tsh_erp-blue tsh_erp-green || test $? -eq 3"
    for t in targets:
        t.run_expect([0], f"mkdir -p /opt/tsh_erp/deploy/lock && echo {shlex.quote(holder)} > /opt/tsh_erp/deploy/lock/holder.json")
    try:
        _RESTORE["locked_before"] = {t.backend.get_hostname(): t.check_output(units) for t in targets}
        _RESTORE["locked"] = run_playbook(RESTORE, *inventory, "-e", "backups_restore_confirm=tsh_erp")
        _RESTORE["locked_after"] = {
            t.backend.get_hostname(): {
                "units": t.check_output(units),
                "holder_kept": t.file("/opt/tsh_erp/deploy/lock/holder.json").contains("ci@runner"),
                "rows": sql(t, count),
            }
            for t in targets
        }
    finally:
        for t in targets:
            t.run_expect([0], "rm -rf /opt/tsh_erp/deploy/lock")
    started = {t.backend.get_hostname(): t.check_output("systemctl show -p ActiveEnterTimestampMonotonic tsh_erp-blue")
               for t in targets}
    _RESTORE["restore"] = run_playbook(RESTORE, *inventory, "-e", "backups_restore_confirm=tsh_erp")
    _RESTORE["after"] = {
        t.backend.get_hostname(): {
            "rows": sql(t, count),
            "blue_restarted": t.check_output("systemctl show -p ActiveEnterTimestampMonotonic tsh_erp-blue")
            != started[t.backend.get_hostname()],
            "blue": t.check_output("systemctl is-active tsh_erp-blue || test $? -eq 3"),
            "green": t.check_output("systemctl is-active tsh_erp-green || test $? -eq 3"),
            "app_login": t.run("PGPASSWORD=molecule-app-password-0123 psql 'host=127.0.0.1 dbname=tsh_erp user=tsh_erp' "
                               "-AXqt -c 'SELECT count(*) FROM orders'").stdout.strip(),
        }
        for t in targets
    }
    return _RESTORE


def test_backup_playbook_prints_the_file(host):
    run = restore_story()["backup"]
    assert run.returncode == 0, output(run)[-3000:]
    assert "written to /opt/tsh_erp/backups" in output(run)
    assert ".dump" in output(run)


def test_restore_refused_without_confirmation(host):
    story = restore_story()
    assert story["refused"].returncode != 0
    assert "Confirm with -e backups_restore_confirm=tsh_erp" in output(story["refused"])
    assert story["after_refused"][host.backend.get_hostname()] == "0"


def test_restore_brings_the_deleted_row_back(host):
    story = restore_story()
    run = story["restore"]
    assert run.returncode == 0, output(run)[-3000:]
    text = output(run)
    assert "Restored tsh_erp from /opt/tsh_erp/backups/tsh_erp_" in text
    assert "Safety dump of the state before" in text
    after = story["after"][host.backend.get_hostname()]
    assert after["rows"] == "1"
    assert after["app_login"] == story["total"][host.backend.get_hostname()]
    if host.backend.get_hostname().endswith("debian12"):
        assert after["blue"] == "active" and after["blue_restarted"]
        assert after["green"] == "inactive"
    else:
        assert after["blue"] == "inactive"
        assert after["green"] == "active"
        assert "tsh_erp-green.service" in text.split("started after the restore:", 1)[1]


def test_restore_releases_the_deploy_lock(host):
    restore_story()
    assert not host.file("/opt/tsh_erp/deploy/lock").exists


def test_restore_waits_for_a_running_deploy(host):
    """A deploy holds the lock: restore.yml refuses before stopping anything and leaves the lock."""
    story = restore_story()
    name = host.backend.get_hostname()
    assert story["locked"].returncode != 0
    assert "is held by ci@runner deploying v9" in output(story["locked"])
    assert story["locked_after"][name]["units"] == story["locked_before"][name]
    assert story["locked_after"][name]["holder_kept"]
    assert story["locked_after"][name]["rows"] == "0"
