"""Unit tests for plugins/module_utils/tsh_backup.py: the deploy's backup phase in one call (the
database answers, the timers pause, the backup runs), against a fake host."""

import pytest

from ansible_collections.tsh.infra.plugins.module_utils import tsh_backup as tb


class Host:
    """psql, systemctl and the backup script as the phase sees them; records every call."""

    def __init__(self, db_up=True, backup_rc=0, timers_active=True, missing_unit=""):
        self.db_up, self.backup_rc, self.timers_active, self.missing = db_up, backup_rc, timers_active, missing_unit
        self.calls = []

    def __call__(self, argv, env=None):
        self.calls.append((argv, env))
        if "psql" in argv:
            return (0, "1\n", "") if self.db_up else (2, "", "psql: error: connection to server failed\n")
        if argv[:2] == ["systemctl", "show"]:
            names = argv[argv.index("--") + 1:]
            return 0, "\n".join(
                f"Id={n}\nLoadState={'not-found' if n == self.missing else 'loaded'}\n"
                f"ActiveState={'active' if self.timers_active else 'inactive'}\nUnitFileState=enabled\n"
                for n in names), ""
        if argv[0] == "systemctl":
            return 0, "", ""
        if self.backup_rc:
            return self.backup_rc, "", "tsh-backup: pg_dump: error: permission denied\n"
        return 0, "", ("tsh-backup: wrote /opt/tsh_erp/backups/tsh_erp-pre-deploy-v2.dump (42 bytes, sha256 ab)\n"
                       "tsh-backup: kept 7 days\n")

    def verbs(self):
        return [" ".join(argv[1:]) for argv, _ in self.calls if argv[0] == "systemctl" and argv[1] != "show"]


ARGS = {"database": "tsh_erp", "port": 5432, "host": "db1", "check": True,
        "timers": ["tsh-backup.timer", "tsh-backup-verify.timer"], "resume_timer": "tsh-backup-resume.timer",
        "command": "runuser -u postgres -- /usr/local/sbin/tsh-backup --label pre-deploy-{version}",
        "version": "v2"}


def test_the_phase_checks_pauses_and_backs_up_in_that_order():
    host = Host()
    result = tb.run_phase(host, **ARGS)
    assert result["files"] == ["tsh_erp-pre-deploy-v2.dump"]
    assert result["paused"] == ["tsh-backup.timer", "tsh-backup-verify.timer"]
    assert result["changed"] is True
    kinds = [("psql" if "psql" in argv else argv[0] + " " + argv[1]) for argv, _ in host.calls]
    assert kinds == ["psql", "systemctl show", "systemctl stop", "systemctl stop", "systemctl restart", "runuser -u"]
    assert host.verbs() == ["stop -- tsh-backup.timer", "stop -- tsh-backup-verify.timer",
                            "restart -- tsh-backup-resume.timer"]
    psql_argv, psql_env = host.calls[0]
    assert psql_env == {"PGCONNECT_TIMEOUT": "5"} and psql_argv[-1] == "SELECT 1" and "tsh_erp" in psql_argv
    assert host.calls[-1][0][-1] == "pre-deploy-v2"


def test_a_database_that_does_not_answer_is_refused_before_anything_changes():
    host = Host(db_up=False)
    with pytest.raises(tb.BackupError) as err:
        tb.run_phase(host, **ARGS)
    assert "does not answer" in str(err.value) and "systemctl start postgresql" in str(err.value)
    assert "Nothing was changed" in str(err.value)
    assert len(host.calls) == 1


def test_without_the_check_the_database_is_not_asked():
    host = Host(db_up=False)
    tb.run_phase(host, **{**ARGS, "check": False})
    assert not any("psql" in argv for argv, _ in host.calls)


def test_without_a_command_nothing_pauses_and_nothing_runs():
    host = Host()
    result = tb.run_phase(host, **{**ARGS, "command": ""})
    assert result == {"changed": False, "paused": [], "files": [], "steps": []}
    assert len(host.calls) == 1  # the database check only


def test_stopped_timers_are_not_stopped_again_but_the_resume_timer_is_rearmed():
    host = Host(timers_active=False)
    result = tb.run_phase(host, **ARGS)
    assert host.verbs() == ["restart -- tsh-backup-resume.timer"]
    assert result["paused"] == ARGS["timers"]


def test_a_failed_backup_says_so_with_its_output():
    host = Host(backup_rc=1)
    with pytest.raises(tb.BackupError) as err:
        tb.run_phase(host, **ARGS)
    assert "pre-deploy backup on db1 failed (exit 1" in str(err.value)
    assert "permission denied" in str(err.value)


def test_a_missing_timer_fails_before_the_backup():
    host = Host(missing_unit="tsh-backup-verify.timer")
    with pytest.raises(tb.BackupError) as err:
        tb.run_phase(host, **ARGS)
    assert "pausing the backup timers on db1 failed" in str(err.value)
    assert not any(argv[0] == "runuser" and "psql" not in argv for argv, _ in host.calls)


def test_written_reads_the_scripts_lines_only():
    text = ("tsh-backup: wrote /b/a.dump (1 bytes, sha256 x)\nnoise wrote /x\n  tsh-backup: wrote /b/c.sql.gz\n"
            "tsh-backup: wrote /b/dir/ (2 bytes)\n")
    assert tb.written(text) == ["a.dump", "c.sql.gz", "dir"]
