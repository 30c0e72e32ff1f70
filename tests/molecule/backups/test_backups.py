"""Backups proven by using them: dumps and an archive of the shared paths that check out, pruning, a
restore check that catches damage and alerts, and a deleted row and a deleted upload brought back
with playbooks/restore.yml."""

import json
import os
import pathlib
import re
import shlex
import tempfile
import time
import uuid

import pytest
import testinfra

from conftest import REPO, output, run_playbook, sql, start_unit

testinfra_hosts = ["ansible://targets"]

DIR = "/opt/tsh_erp/backups"
ALERTS = "/var/log/tsh-test-alerts.log"
INVENTORY = pathlib.Path(__file__).with_name("inventory.ini")
BACKUP = REPO / "playbooks/backup.yml"
RESTORE = REPO / "playbooks/restore.yml"
# backups_shared_paths (molecule.yml): the uploads prepare.yml made, and a path that does not exist.
IMAGES = "/opt/tsh_erp/shared/app/images"
UPLOAD = f"{IMAGES}/thumbs/product-1.png"
MISSING = "/opt/tsh_erp/shared/app/documents"


def dumps(host, prefix="tsh_erp", ext="dump"):
    """Dump file names of one kind, oldest first (by the stamp in the name)."""
    out = host.check_output(f"find {DIR} -maxdepth 1 -type f -name '{prefix}_*.{ext}' -printf '%f\\n' | sort")
    return out.splitlines()


def backup_now(host, expect=()):
    """Run the backup service; return the newest dump's name (and the run's log when `expect` is given)."""
    rc, log = start_unit(host, "tsh-backup.service", expect)
    assert rc == 0, log
    return (dumps(host)[-1], log) if expect else dumps(host)[-1]


def last_backup(host):
    return json.loads(host.file("/var/lib/tsh-backups/backup.json").content_string)


def listing(host, archive):
    """tar's verbose listing of a files archive: {member: (mode string, owner/group)}."""
    out = host.check_output(f"tar --list --verbose --gzip --file={DIR}/{archive}")
    return {line.split()[5]: (line.split()[0], line.split()[1]) for line in out.splitlines()}


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
    for path in (f"{DIR}/{name}", f"{DIR}/{name}.sha256", f"{DIR}/globals_{stamp}.sql", f"{DIR}/files_{stamp}.tar.gz",
                 f"{DIR}/files_{stamp}.tar.gz.sha256"):
        f = host.file(path)
        assert (f.user, f.mode) == ("postgres", 0o600), path
    assert host.check_output(f"find {DIR} -perm /o+rwx -o -perm /g+rwx") == ""
    assert host.check_output(f"find {DIR} -name '*.partial'") == ""
    status = json.loads(host.file("/var/lib/tsh-backups/backup.json").content_string)
    assert status["result"] == "success"
    assert status["stamp"] == stamp
    assert name in status["files"]


def test_backup_archives_the_shared_paths(host):
    """The service (as root) archives the uploads, which postgres cannot read, next to the dump:
    checksummed, with owners and modes, the content intact; the missing shared path is skipped."""
    _, log = backup_now(host, expect=("skipping shared path", "wrote"))
    stamp = last_backup(host)["stamp"]
    archive = f"files_{stamp}.tar.gz"
    assert archive in last_backup(host)["files"] and f"{archive}.sha256" in last_backup(host)["files"]
    assert host.run(f"cd {DIR} && sha256sum --check --strict {archive}.sha256").rc == 0
    members = listing(host, archive)
    assert members["opt/tsh_erp/shared/app/images/"] == ("drwxr-x---", "tsh_erp/tsh_erp")
    assert members[UPLOAD.lstrip("/")] == ("-rw-r-----", "tsh_erp/tsh_erp")
    assert not [m for m in members if not m.startswith("opt/tsh_erp/shared/app/images/")]
    content = host.check_output(f"tar --extract --to-stdout --gzip --file={DIR}/{archive} {UPLOAD.lstrip('/')}")
    assert content == host.file(UPLOAD).content_string.strip()
    assert f"skipping shared path {MISSING}: it does not exist (yet)" in log
    assert f"wrote {DIR}/{archive}" in log
    assert host.check_output(f"runuser -u postgres -- test -r {UPLOAD} || echo closed") == "closed"


def test_offsite_copy_after_each_backup(host):
    name = backup_now(host)
    copy = host.run(f"cd /var/tmp/tsh-offsite && sha256sum --check --strict {name}.sha256")
    assert copy.rc == 0, copy.stderr


def test_labelled_backup_names_every_file(host):
    """tsh-backup --label (deploy.yml's pre-deploy dump) puts the label after the stamp of every file;
    a label that is not a plain name is refused before anything is written."""
    # As root (it reads the shared paths, the dumps run as postgres), from root's home as deploy.yml
    # over SSH runs it: postgres cannot enter the caller's directory.
    run = host.run("cd /root && /usr/local/sbin/tsh-backup --no-prune --label pre-deploy-2026.11.29-1")
    assert run.rc == 0, run.stderr
    # (Not dumps()[-1]: the previous check's dump may carry the same second, and sorts after it.)
    (name,) = [d for d in dumps(host) if d.endswith("-pre-deploy-2026.11.29-1.dump")]
    stamp = name.removeprefix("tsh_erp_").removesuffix(".dump")
    assert host.run(f"cd {DIR} && sha256sum --check --strict {name}.sha256 globals_{stamp}.sql.sha256 "
                    f"files_{stamp}.tar.gz.sha256").rc == 0
    assert UPLOAD.lstrip("/") in listing(host, f"files_{stamp}.tar.gz")
    assert host.check_output(f"find {DIR} -name '*{stamp}*' ! -user postgres") == ""
    status = json.loads(host.file("/var/lib/tsh-backups/backup.json").content_string)
    assert status["label"] == "pre-deploy-2026.11.29-1" and name in status["files"]
    assert f"files_{stamp}.tar.gz" in status["files"]
    before = host.check_output(f"ls -A {DIR}")
    bad = host.run("/usr/local/sbin/tsh-backup --label ../../tmp/x")
    assert bad.rc != 0 and "label '../../tmp/x' must be letters, digits" in bad.stderr
    # As postgres (runuser, as the inventories' deploy_backup_command says today) it cannot read the
    # uploads: it refuses before writing anything rather than leave them out.
    closed = host.run("cd /root && runuser -u postgres -- /usr/local/sbin/tsh-backup --no-prune --label pre-deploy-x")
    assert closed.rc != 0
    assert "running as postgres, which cannot search /opt/tsh_erp/shared/app to find shared path" in closed.stderr
    assert "run tsh-backup as root" in closed.stderr
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
    fake_dump(host, "files_20260101T023000Z.tar.gz", "10 days ago")
    fake_dump(host, "files_20260103T023000Z-pre-deploy-x.tar.gz", "6 days ago")
    log = prune(host)
    assert "pruned tsh_erp_20260101T023000Z.dump" in log
    remaining = dumps(host)
    assert "tsh_erp_20260101T023000Z.dump" not in remaining
    assert "tsh_erp_20260102T023000Z.dump" not in remaining
    assert "tsh_erp_20260103T023000Z.dump" in remaining
    assert newest in remaining
    assert "globals_20260101T023000Z.sql" not in dumps(host, "globals", "sql")
    assert not host.file(f"{DIR}/tsh_erp_20260101T023000Z.dump.sha256").exists
    archives = dumps(host, "files", "tar.gz")
    assert "files_20260101T023000Z.tar.gz" not in archives
    assert not host.file(f"{DIR}/files_20260101T023000Z.tar.gz.sha256").exists
    assert "files_20260103T023000Z-pre-deploy-x.tar.gz" in archives
    assert f"files_{last_backup(host)['stamp']}.tar.gz" in archives


def test_retention_never_deletes_the_newest_good_dump(host):
    """With every file aged past retention (a clock jump), the newest dump whose checksum matches
    stays; a newer-named but damaged one does not count and goes."""
    newest = backup_now(host)
    archive = f"files_{last_backup(host)['stamp']}.tar.gz"
    fake_dump(host, "tsh_erp_20991231T000000Z.dump", "now")
    host.run_expect([0], f"echo damage >> {DIR}/tsh_erp_20991231T000000Z.dump")
    fake_dump(host, "files_20991231T000000Z.tar.gz", "now")
    host.run_expect([0], f"echo damage >> {DIR}/files_20991231T000000Z.tar.gz")
    host.run_expect([0], f"find {DIR} -type f -exec touch -d '40 days ago' {{}} +")
    log = prune(host)
    assert f"keeping {newest}" in log
    assert dumps(host) == [newest]
    assert len(dumps(host, "globals", "sql")) == 1
    assert f"keeping {archive}" in log
    assert dumps(host, "files", "tar.gz") == [archive]


def test_retention_keeps_at_most_the_newest_count(host):
    """backups_retention_count (14): of 20 young dumps and the real one, the newest 14 stay."""
    newest = backup_now(host)
    young = [f"tsh_erp_20990101T{i:02d}0000Z.dump" for i in range(20)]
    for name in young:
        fake_dump(host, name, "now")
    log = prune(host)
    # Named after the real dump (2026), the fake ones (2099) sort newer: the 14 newest stay.
    assert dumps(host) == young[6:]
    assert f"pruned {young[5]} (beyond the newest 14)" in log
    assert newest not in dumps(host)
    host.run_expect([0], f"rm -f {DIR}/tsh_erp_2099*")


def script_copy(host, script, changes):
    """A copy of an installed script with some of its settings changed (name=value lines), readable
    by postgres: the real logic under a setting the scenario cannot give the live host."""
    copy = f"/usr/local/sbin/{script}-test"
    edits = " ".join(f"-e 's|^{name}=.*|{name}={value}|'" for name, value in changes.items())
    host.run_expect([0], f"sed {edits} /usr/local/sbin/{script} > {copy} && chmod 0755 {copy}")
    return copy


def test_refuses_to_start_when_the_last_backup_would_not_fit(host):
    """The space check counts the last backup's size (its record's bytes), not only the threshold."""
    record = "/var/tmp/tsh-test-backup.json"
    copy = script_copy(host, "tsh-backup", {"min_free_mb": 1, "status_file": record})
    host.run_expect([0], f"echo '{{\"bytes\": 8388608, \"files\": []}}' > {record} && chown postgres {record}")
    host.run_expect([0], f"mount -t tmpfs -o size=4m,mode=0700,uid=postgres,gid=postgres tsh-test-small {DIR}")
    try:
        run = host.run(f"runuser -u postgres -- {copy}")
        assert run.rc != 0
        assert "refusing to start: only 4 MB free on the file system of /opt/tsh_erp/backups, below the 8 MB of " \
               "the last backup plus backups_min_free_mb (1 MB)" in run.stderr
        assert host.check_output(f"ls -A {DIR}") == ""
    finally:
        host.run_expect([0], f"umount {DIR}")
        host.run_expect([0], f"rm -f {copy} {record}")


def test_verify_refuses_when_the_copy_would_fill_postgres_disk(host):
    """The restore check measures PostgreSQL's data file system before it restores a scratch copy."""
    backup_now(host)
    copy = script_copy(host, "tsh-backup-verify", {"min_free_mb": 1000000000})
    try:
        run = host.run(f"runuser -u postgres -- {copy}")
        assert run.rc != 0
        assert "into a scratch database: the file system of PostgreSQL's data (/var/lib/postgresql/" in run.stderr
        assert "plus backups_min_free_mb (1000000000 MB); free space there" in run.stderr
        assert sql(host, "SELECT count(*) FROM pg_database WHERE datname LIKE 'tsh_verify_%'", db="postgres") == "0"
    finally:
        host.run_expect([0], f"rm -f {copy}")


HOLDER = """#!/bin/sh
# Holds the backup lock (flock runs it) as a backup job would: its line in the file, then $1.
echo "test holder (pid $$)" > /var/lib/tsh-backups/lock
sh -c "$1"
"""


def hold_backup_lock(host, while_held):
    """Hold the backup lock as a job would, in a transient unit, while the shell command runs."""
    host.run_expect([0], f"printf %s {shlex.quote(HOLDER)} > /usr/local/sbin/tsh-test-holder && "
                    "chmod 0755 /usr/local/sbin/tsh-test-holder && "
                    "touch /var/lib/tsh-backups/lock && chown postgres:postgres /var/lib/tsh-backups/lock")
    host.run_expect([0], "systemd-run --unit=tsh-test-lock-holder --collect flock /var/lib/tsh-backups/lock "
                    f"/usr/local/sbin/tsh-test-holder {shlex.quote(while_held)}")
    host.run_expect([0], "timeout 10 sh -c 'until grep -q \"test holder\" /var/lib/tsh-backups/lock; do sleep 0.1; done'")


@pytest.mark.parametrize("unit", ["tsh-backup.service", "tsh-backup-verify.service"])
def test_one_backup_job_at_a_time(host, unit):
    """A job that finds another running waits for it, saying which, then runs."""
    backup_now(host)
    hold_backup_lock(host, "sleep 3")
    started = time.monotonic()
    rc, log = start_unit(host, unit, expect=("waiting up to 900 s for the lock: test holder (pid",))
    assert rc == 0, log
    assert "waiting up to 900 s for the lock: test holder (pid" in log
    assert time.monotonic() - started >= 2


def test_lock_wait_is_bounded(host):
    """Past backups_lock_wait_s the job fails, naming the holder; nothing is written."""
    copy = script_copy(host, "tsh-backup", {"lock_wait_s": 1})
    before = dumps(host)
    hold_backup_lock(host, "sleep 5")
    try:
        run = host.run(f"{copy} --no-prune")
        assert run.rc != 0
        assert "gave up after waiting 1 s (backups_lock_wait_s) for /var/lib/tsh-backups/lock: test holder (pid" \
               in run.stderr
        assert dumps(host) == before
    finally:
        host.run_expect([0], f"rm -f {copy}")
        host.run_expect([0], "timeout 10 sh -c 'while systemctl is-active -q tsh-test-lock-holder; do sleep 0.2; done'")


def test_refuses_to_start_when_disk_is_nearly_full(host):
    """Fault table, row "disk nearly full": a 1 MB file system over the backup directory; the service
    fails with a clear line and alerts."""
    host.run_expect([0], f"mount -t tmpfs -o size=1m,mode=0700,uid=postgres,gid=postgres tsh-test-full {DIR}")
    try:
        rc, log = start_unit(host, "tsh-backup.service", expect=("refusing to start",))
        assert rc != 0
        assert "refusing to start: only 1 MB free" in log
        assert "plus backups_min_free_mb (1024 MB)" in log
        assert host.check_output(f"ls -A {DIR}") == ""
        assert wait_for_alert(host, "tsh-backup.service")
    finally:
        host.run_expect([0], f"umount {DIR}")


def test_verify_restores_the_newest_dump(host):
    backup_now(host)
    archive = dumps(host, "files", "tar.gz")[-1]
    entries = f"{archive} lists {len(listing(host, archive))} entries"
    rc, log = start_unit(host, "tsh-backup-verify.service", expect=("restores:", entries))
    assert rc == 0, log
    assert "restores: 1 tables, check query returned 1 rows" in log
    assert entries in log
    assert sql(host, "SELECT count(*) FROM pg_database WHERE datname LIKE 'tsh_verify_%'", db="postgres") == "0"
    status = json.loads(host.file("/var/lib/tsh-backups/verify.json").content_string)
    assert status["result"] == "success"
    assert dumps(host)[-1] in status["files"]
    assert archive in status["files"]


def test_damaged_dump_fails_verify_loudly_and_alerts(host):
    """Fault table, row "corrupted dump": the nightly check fails, keeps the last good verdict and alerts."""
    name = backup_now(host)
    before = host.file("/var/lib/tsh-backups/verify.json").content_string
    host.run_expect([0], f"rm -f {ALERTS}")
    host.run_expect([0], f"printf 'XXXXXXXX' | dd of={DIR}/{name} bs=1 seek=200 conv=notrunc status=none")
    rc, log = start_unit(host, "tsh-backup-verify.service", expect=("FAILED:",))
    assert rc != 0
    assert f"FAILED: {name} does not match its checksum" in log
    assert wait_for_alert(host, "tsh-backup-verify.service")
    assert host.file("/var/lib/tsh-backups/verify.json").content_string == before


def test_damaged_files_archive_fails_verify_and_alerts(host):
    """A files archive that no longer matches its checksum fails the check; so does one that
    matches its checksum but that tar cannot read (damaged before it was checksummed)."""
    backup_now(host)
    archive = f"files_{last_backup(host)['stamp']}.tar.gz"
    before = host.file("/var/lib/tsh-backups/verify.json").content_string
    host.run_expect([0], f"rm -f {ALERTS}")
    host.run_expect([0], f"printf 'XXXXXXXX' | dd of={DIR}/{archive} bs=1 seek=40 conv=notrunc status=none")
    rc, log = start_unit(host, "tsh-backup-verify.service", expect=("FAILED:",))
    assert rc != 0
    assert f"FAILED: {archive} does not match its checksum" in log
    assert wait_for_alert(host, "tsh-backup-verify.service")
    unreadable = "files_20991231T000000Z.tar.gz"
    fake_dump(host, unreadable, "now")
    try:
        rc, log = start_unit(host, "tsh-backup-verify.service", expect=("FAILED:",))
        assert rc != 0
        assert f"FAILED: tar cannot list {unreadable}: the archive is damaged" in log
    finally:
        host.run_expect([0], f"rm -f {DIR}/{unreadable} {DIR}/{unreadable}.sha256")
    assert host.file("/var/lib/tsh-backups/verify.json").content_string == before


_RESTORE = {}


def uploads(t, story_upload):
    """What the story looks at in the shared path: its upload (mode, owner, content), the file put
    there after the backup, an interrupted restore's leftovers, the directory's mode and owner."""
    def stat(path):
        return t.run(f"stat -c '%a %U:%G' {path}").stdout.strip() or None
    return {
        "upload": stat(story_upload),
        "content": t.run(f"cat {story_upload}").stdout,
        "after_backup": t.file(f"{IMAGES}/after-backup.png").exists,
        "leftover": t.file("/opt/tsh_erp/shared/app/.images.tsh-restore").exists,
        "dir": stat(IMAGES),
        "product": t.file(UPLOAD).exists,
    }


def restore_story():
    """Once for both targets: a row and an upload are added, backed up with backup.yml, deleted,
    then restore.yml runs without and with confirmation (Debian 13 with
    backups_restore_shared_paths=false: the database only). Returns the runs and what each target
    looked like after each step."""
    if _RESTORE:
        return _RESTORE
    targets = testinfra.get_hosts(["ansible://targets"], ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])
    # Debian 13 restores the database only: a host variable in an inventory of its own.
    fd, skip_files = tempfile.mkstemp(suffix=".yml", prefix="tsh-backups-")
    with os.fdopen(fd, "w") as f:
        json.dump({"all": {"hosts": {t.backend.get_hostname(): {"backups_restore_shared_paths": False}
                                     for t in targets if t.backend.get_hostname().endswith("debian13")}}}, f)
    inventory = ("-i", str(INVENTORY), "-i", skip_files)
    marker = f"precious-{uuid.uuid4()}"
    count = f"SELECT count(*) FROM orders WHERE note = '{marker}'"
    story_upload = f"{IMAGES}/{marker}.png"
    _RESTORE["marker"] = marker
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
        # The row's upload, as the application writes it (UMask=0027).
        t.run_expect([0], f"runuser -u tsh_erp -- sh -c 'umask 0027 && echo {marker} > {story_upload}'")
    _RESTORE["total"] = {t.backend.get_hostname(): sql(t, "SELECT count(*) FROM orders") for t in targets}
    _RESTORE["backup"] = run_playbook(BACKUP, *inventory)
    for t in targets:
        sql(t, f"DELETE FROM orders WHERE note = '{marker}'")
        t.run_expect([0], f"rm {story_upload} && runuser -u tsh_erp -- touch {IMAGES}/after-backup.png")
        if t.backend.get_hostname().endswith("debian12"):
            # What a restore killed while extracting leaves beside the directory.
            t.run_expect([0], "mkdir -p /opt/tsh_erp/shared/app/.images.tsh-restore/new/opt && "
                         "touch /opt/tsh_erp/shared/app/.images.tsh-restore/new/opt/partial")
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
                "uploads": uploads(t, story_upload),
            }
            for t in targets
        }
    finally:
        for t in targets:
            t.run_expect([0], "rm -rf /opt/tsh_erp/deploy/lock")
    started = {t.backend.get_hostname(): t.check_output("systemctl show -p ActiveEnterTimestampMonotonic tsh_erp-blue")
               for t in targets}
    # What a restore killed at its swap leaves: the live database closed to connections and a
    # half-loaded copy beside it. The next restore repairs both first.
    for t in targets:
        sql(t, "CREATE DATABASE tsh_erp__restore", db="postgres")
        sql(t, "ALTER DATABASE tsh_erp WITH ALLOW_CONNECTIONS false", db="postgres")
    # A backup job is running when the restore starts: the holder lets go of the backup lock once it
    # sees both timers paused and the resume timer armed (at most 5 min), noting what it saw and when.
    for t in targets:
        t.run_expect([0], "rm -f /var/tmp/tsh-test-timers-seen /var/tmp/tsh-test-released")
        hold_backup_lock(t, "timeout 300 sh -c 'while systemctl is-active -q tsh-backup.timer || "
                            "systemctl is-active -q tsh-backup-verify.timer || "
                            "! systemctl is-active -q tsh-backup-resume.timer; do sleep 0.2; done'; "
                            "systemctl is-active tsh-backup.timer tsh-backup-verify.timer tsh-backup-resume.timer > /var/tmp/tsh-test-timers-seen; "
                            "date -u +%Y%m%dT%H%M%SZ > /var/tmp/tsh-test-released")
    _RESTORE["restore"] = run_playbook(RESTORE, *inventory, "-e", "backups_restore_confirm=tsh_erp")
    os.unlink(skip_files)
    _RESTORE["after"] = {
        t.backend.get_hostname(): {
            "rows": sql(t, count),
            "blue_restarted": t.check_output("systemctl show -p ActiveEnterTimestampMonotonic tsh_erp-blue")
            != started[t.backend.get_hostname()],
            "blue": t.check_output("systemctl is-active tsh_erp-blue || test $? -eq 3"),
            "green": t.check_output("systemctl is-active tsh_erp-green || test $? -eq 3"),
            "app_login": t.run("PGPASSWORD=molecule-app-password-0123 psql 'host=127.0.0.1 dbname=tsh_erp user=tsh_erp' "
                               "-AXqt -c 'SELECT count(*) FROM orders'").stdout.strip(),
            "uploads": uploads(t, story_upload),
            "timers_seen": t.run("cat /var/tmp/tsh-test-timers-seen").stdout.split(),
            "released": t.run("cat /var/tmp/tsh-test-released").stdout.strip(),
            "timers": t.run("systemctl is-active tsh-backup.timer tsh-backup-verify.timer tsh-backup-resume.timer").stdout.split(),
            "databases": sql(t, r"SELECT string_agg(datname || ':' || datallowconn, ',' ORDER BY datname) FROM pg_database "
                                r"WHERE datname LIKE 'tsh\_erp%'", db="postgres"),
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


def restore_report(story, host):
    """The restore's closing message for this host (the last task that prints one)."""
    text = output(story["restore"]).rsplit(f"ok: [{host.backend.get_hostname()}] =>", 1)[1]
    return re.split(r"ok: \[|PLAY RECAP", text, maxsplit=1)[0]


def test_restore_brings_the_deleted_upload_back(host):
    """The shared path's content is replaced by the dump's files archive: the deleted upload is back
    with its owner and mode, the file added since is gone, an interrupted restore's leftovers too.
    With backups_restore_shared_paths=false (Debian 13) the files stay as they were."""
    story = restore_story()
    assert story["restore"].returncode == 0, output(story["restore"])[-3000:]
    after = story["after"][host.backend.get_hostname()]["uploads"]
    report = restore_report(story, host)
    assert after["product"]
    assert after["dir"] == "750 tsh_erp:tsh_erp"
    assert "Safety dump of the state before: /opt/tsh_erp/backups/tsh_erp_" in report
    assert " and /opt/tsh_erp/backups/files_" in report
    if host.backend.get_hostname().endswith("debian12"):
        # The archive written with the restored dump: same stamp.
        (stamp,) = re.findall(r"Restored tsh_erp from /opt/tsh_erp/backups/tsh_erp_(\S+)[.]dump[.]", report)
        assert f"Shared paths: restored {IMAGES} from /opt/tsh_erp/backups/files_{stamp}.tar.gz;" in report
        assert after["upload"] == "640 tsh_erp:tsh_erp"
        assert after["content"].strip() == story["marker"]
        assert not after["after_backup"]
        assert not after["leftover"]
        assert f"not in the archive, left as they were: {MISSING}" in report
    else:
        assert after["upload"] is None
        assert after["after_backup"]
        assert "Shared paths: not restored (backups_restore_shared_paths=false)" in report


def test_restore_pauses_the_timers_and_waits_for_a_running_backup_job(host):
    """A backup job held the lock when the restore began: the restore paused both timers, its safety
    dump waited for the job to end, and the timers run again afterwards."""
    story = restore_story()
    assert story["restore"].returncode == 0, output(story["restore"])[-3000:]
    after = story["after"][host.backend.get_hostname()]
    # Paused, with tsh-backup-resume.timer armed should the restore be killed.
    assert after["timers_seen"] == ["inactive", "inactive", "active"]
    (safety,) = re.findall(r"Safety dump of the state before: /opt/tsh_erp/backups/tsh_erp_(\d{8}T\d{6}Z)[.]dump",
                           restore_report(story, host))
    assert after["released"] and safety >= after["released"]
    assert after["timers"] == ["active", "active", "inactive"]


def test_timers_paused_by_a_killed_run_resume_by_themselves(host):
    """A deploy or restore killed while the timers are paused (tasks/timers.yml stopped them and armed
    tsh-backup-resume.timer, then nothing resumed them): the resume timer starts them again. Its delay
    (backups_pause_max_s) is cut to 2 s by a runtime drop-in."""
    dropin = "/run/systemd/system/tsh-backup-resume.timer.d"
    host.run_expect([0], f"mkdir -p {dropin} && printf '[Timer]\\nOnActiveSec=\\nOnActiveSec=2s\\n' > {dropin}/test.conf"
                         " && systemctl daemon-reload")
    try:
        host.run_expect([0], "systemctl stop tsh-backup.timer tsh-backup-verify.timer tsh-backup-resume.timer"
                             " && systemctl start tsh-backup-resume.timer")
        states = "systemctl is-active tsh-backup.timer tsh-backup-verify.timer tsh-backup-resume.timer"
        assert host.run(states).stdout.split() == ["inactive", "inactive", "active"]
        deadline = time.monotonic() + 30
        while host.run(states).stdout.split() != ["active", "active", "inactive"] and time.monotonic() < deadline:
            time.sleep(0.5)
        assert host.run(states).stdout.split() == ["active", "active", "inactive"]
        journal = host.check_output("journalctl -u tsh-backup-resume.service --no-pager -o cat")
        assert "tsh-backup-resume.service: Deactivated successfully" in journal, journal
    finally:
        host.run_expect([0], f"rm -rf {dropin} && systemctl daemon-reload"
                             " && systemctl start tsh-backup.timer tsh-backup-verify.timer")


def test_restore_repairs_a_killed_restore_and_leaves_one_open_database(host):
    """A killed restore's leftovers (the live database closed, a half-loaded copy beside it) are
    repaired first; after the swap only the database itself is there, open to connections."""
    story = restore_story()
    assert story["restore"].returncode == 0, output(story["restore"])[-3000:]
    assert story["after"][host.backend.get_hostname()]["databases"] == "tsh_erp:true"
    repair = output(story["restore"]).split("Repair what a killed restore left", 1)[1].split("TASK [", 1)[0]
    assert f"changed: [{host.backend.get_hostname()}]" in repair


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
    assert story["locked_after"][name]["uploads"]["upload"] is None
    assert story["locked_after"][name]["uploads"]["after_backup"]
