"""The deploy's backup phase on the database host, in one call: the database answers, the backup
timers pause (a backup started by its timer would hold pg_dump's locks while a migration waits to
alter a table), and the pre-deploy backup runs. The logic of the tsh_deploy_backup module; unit tests in
tests/unit/test_backup_phase.py. run(argv, env=None) -> (rc, out, err)."""

from __future__ import annotations

import re
import shlex

from ansible_collections.tsh.infra.plugins.module_utils.tsh_units import UnitError, apply

WROTE = re.compile(r"^tsh-backup: wrote (\S+)")


class BackupError(Exception):
    """The phase cannot go on; the message says what happened, whether anything changed, and the fix."""


def _tail(text, lines=15):
    return " / ".join((text or "").strip().splitlines()[-lines:])


def check_database(run, database, port, host):
    """Fail, naming the fix, when PostgreSQL does not answer a query on database."""
    rc, out, err = run(["runuser", "-u", "postgres", "--", "psql", "-X", "-w", "-A", "-t", "-p", str(port),
                        "-d", database, "-c", "SELECT 1"], {"PGCONNECT_TIMEOUT": "5"})
    if rc != 0:
        raise BackupError(f"the database {database} on {host} does not answer ({(err or out).strip() or f'exit {rc}'}). "
                          f"Start PostgreSQL there (systemctl start postgresql; its log: journalctl -u postgresql@*) "
                          f"and deploy again. Nothing was changed.")


def written(text):
    """The files the backup script says it wrote (basenames), in order."""
    names = []
    for line in (text or "").splitlines():
        match = WROTE.match(line.strip())
        if match:
            names.append(match.group(1).rstrip("/").rsplit("/", 1)[-1])
    return names


def run_phase(run, *, database, port, host, check, timers, resume_timer, command, version):
    """The whole phase. timers: unit names stopped until the run ends; resume_timer (re)started so
    they come back by themselves should the run be killed. command: the backup command line, {version}
    replaced. Returns {'changed', 'paused', 'files', 'steps'}."""
    if check:
        check_database(run, database, port, host)
    result = {"changed": False, "paused": [], "files": [], "steps": []}
    if not command:
        return result
    units = [{"name": name, "state": "stopped", "enabled": None} for name in timers]
    if resume_timer:
        units.append({"name": resume_timer, "state": "restarted", "enabled": None})
    try:
        paused = apply(units, lambda argv: run(argv, None))
    except UnitError as exc:
        raise BackupError(f"pausing the backup timers on {host} failed: {exc}. Nothing else was changed; "
                          f"the deploy resumes them.") from exc
    result.update(changed=True, paused=list(timers), steps=paused["steps"])
    argv = shlex.split(command.replace("{version}", version))
    rc, out, err = run(argv, None)
    if rc != 0:
        raise BackupError(f"the pre-deploy backup on {host} failed (exit {rc}: {' '.join(argv)}): "
                          f"{_tail(err or out)}. Nothing was deployed; fix the backup (journalctl -t tsh-backup) "
                          f"and deploy again.")
    result["files"] = written(out + "\n" + err)
    return result
