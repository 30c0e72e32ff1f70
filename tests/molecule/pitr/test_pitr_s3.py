"""Point-in-time recovery to an S3-compatible repository (pgbackrest_repo_type: s3): the Debian 12 db
host archives straight to a bucket of moto's S3 server over TLS (checked against the test CA given as
pgbackrest_s3_ca_file), takes and checks its own backups, and a lost data directory comes back from the
bucket with its last committed row. No repository host is involved."""

import json
import re
import time
import uuid

from conftest import REPO, output, sql, start_unit
from test_pitr import RPO_LIMIT_S, SUMMARY, archived, hosts, recover, rows, wait_archived, write_row

testinfra_hosts = ["ansible://db_s3"]

BUCKET = "tsh-pitr"
PREFIX = "tsh/db12s3"


def record(name, value):
    """Keep a figure beside the SSH repository's in .molecule-logs/pitr-figures.json (key s3)."""
    figures = REPO / ".molecule-logs/pitr-figures.json"
    data = json.loads(figures.read_text()) if figures.exists() else {}
    data.setdefault("s3", {})[name] = value
    figures.parent.mkdir(exist_ok=True)
    figures.write_text(json.dumps(data, indent=1) + "\n")


def s3_server():
    return hosts("s3_server")[0]


def bucket_keys(prefix):
    """The bucket's object names under prefix, listed on moto's own host over HTTPS (moto does not
    check signatures, so a plain request lists it)."""
    server = s3_server()
    name = server.backend.get_hostname()
    xml = server.check_output(f"curl -sS --fail --cacert /etc/tsh-test-s3/ca.pem "
                              f"'https://{name}/{BUCKET}?list-type=2&max-keys=10000&prefix={prefix}'")
    return re.findall(r"<Key>([^<]+)</Key>", xml)


def test_configuration_is_private_and_names_the_bucket_over_verified_tls(host):
    conf = host.file("/etc/pgbackrest/pgbackrest.conf")
    assert (conf.user, conf.group, conf.mode) == ("root", "postgres", 0o640)
    text = host.check_output("cat /etc/pgbackrest/pgbackrest.conf")
    for line in ("repo1-type=s3", f"repo1-s3-bucket={BUCKET}", "repo1-storage-verify-tls=y",
                 "repo1-storage-ca-file=/etc/pgbackrest/s3-ca.pem", f"repo1-path=/{PREFIX}"):
        assert line in text.splitlines(), line
    assert "repo1-host" not in text
    # No SSH trust is made for an S3 repository.
    assert not host.file("/var/lib/postgresql/.ssh/authorized_keys").exists


def test_a_committed_row_reaches_the_bucket(host):
    wal = write_row(host, f"s3-{uuid.uuid4()}")
    took = wait_archived(host, wal)
    record("rpo_s", round(took, 1))
    assert took < RPO_LIMIT_S
    assert any(key.split("/")[-1].startswith(wal) for key in bucket_keys(f"{PREFIX}/archive/tsh/")), wal


def test_backups_land_in_the_bucket_from_the_db_hosts_own_units(host):
    """The first full backup came from converge; the differential and the verify run from their units
    on the db host itself, and every timer of the repository side runs there."""
    for unit in ("tsh-pgbackrest-backup@diff.service", "tsh-pgbackrest-verify.service"):
        rc, log = start_unit(host, unit, timeout=120)
        assert rc == 0, log
    info = json.loads(host.check_output("runuser -u postgres -- pgbackrest --stanza=tsh --output=json info"))[0]
    assert info["cipher"] == "aes-256-cbc"
    assert [b["type"] for b in info["backup"]][:1] == ["full"] and info["backup"][-1]["type"] == "diff"
    prefix = f"{PREFIX}/backup/tsh/"
    labels = {key[len(prefix):].split("/")[0] for key in bucket_keys(prefix)}
    assert {b["label"] for b in info["backup"]} <= labels
    for timer in ("tsh-pgbackrest-full.timer", "tsh-pgbackrest-diff.timer", "tsh-pgbackrest-verify.timer",
                  "tsh-pgbackrest-restore-check.timer", "tsh-pgbackrest-archive-check.timer"):
        assert host.service(timer).is_running and host.service(timer).is_enabled, timer


def test_restore_check_runs_on_the_db_host_beside_the_live_cluster(host):
    started = time.monotonic()
    rc, log = start_unit(host, "tsh-pgbackrest-restore-check.service", expect=("restored, recovered and read",),
                         timeout=300)
    record("restore_check_unit_s", round(time.monotonic() - started, 1))
    assert rc == 0, log
    found = SUMMARY.search(log)
    assert found and int(found["tables"]) >= 1, log
    assert host.check_output("ls -A /var/lib/tsh-pgbackrest-check") == ""
    assert sql(host, "SELECT pg_is_in_recovery()") == "f"


def test_lost_data_directory_comes_back_from_the_bucket_with_the_row(host):
    marker = f"s3-kept-{uuid.uuid4()}"
    wal = write_row(host, marker)
    wait_archived(host, wal)
    host.run_expect([0], "systemctl stop postgresql 'postgresql@*-main.service'")
    data = host.check_output("sed -n 's/^pg1-path=//p' /etc/pgbackrest/pgbackrest.conf")
    host.run_expect([0], f"find {data} -mindepth 1 -delete && test -z \"$(ls -A {data})\"")
    started = time.monotonic()
    run = recover("latest", limit="db_s3")
    took = time.monotonic() - started
    assert run.returncode == 0, output(run)[-3000:]
    assert f"to latest from the pgBackRest repository, the S3 bucket {BUCKET} at" in output(run)
    assert rows(host, marker) == "1"
    assert sql(host, "SELECT pg_is_in_recovery()") == "f"
    # Archiving goes on to the bucket on the new timeline.
    wal = write_row(host, f"after-{marker}")
    sql(host, "SELECT pg_switch_wal()")
    assert wait_archived(host, wal) < RPO_LIMIT_S * 2
    assert archived(host, wal)
    record("restore_latest_s", round(took, 1))
