#!/usr/bin/python
"""Ansible module: the deploy's backup phase on the database host, one round trip."""

from __future__ import annotations

DOCUMENTATION = r"""
module: tsh_deploy_backup
short_description: Check the database answers, pause the backup timers and take the pre-deploy backup
description:
  - With O(check_database), fails, changing nothing, when PostgreSQL does not answer C(SELECT 1) on
    O(database) (as the postgres user, 5 s connect timeout), naming the fix.
  - With a O(command), stops the O(timers) (a backup they start would hold pg_dump's locks while a
    migration waits) and restarts O(resume_timer), which starts them again should the run be killed;
    the deploy resumes them at its end. Then runs O(command) ({version} replaced by O(version)) and
    returns the files it says it wrote (its lines C(tsh-backup) C(wrote <path>)).
  - The logic is in plugins/module_utils/tsh_backup.py (unit tests in tests/unit/test_backup_phase.py).
extends_documentation_fragment: [tsh.infra.steplock]
options:
  database: {description: The application's database., type: str, required: true}
  port: {description: PostgreSQL's port., type: int, default: 5432}
  check_database: {description: Whether to check the database answers first., type: bool, default: true}
  command: {description: The backup command line; empty skips the pause and the backup., type: str, default: ""}
  version: {description: 'The release id put into the command for {version}.', type: str, default: ""}
  timers: {description: Timers paused until the deploy resumes them., type: list, elements: str, default: []}
  resume_timer: {description: Timer that resumes them should the run be killed (restarted)., type: str, default: ""}
  host: {description: This host's name, for messages., type: str, default: the database host}
"""

EXAMPLES = r"""
- name: Back up the database before migrations
  tsh_deploy_backup:
    database: tsh_erp
    command: runuser -u postgres -- /usr/local/sbin/tsh-backup --label pre-deploy-{version}
    version: "2026.12.07-1"
    timers: [tsh-backup.timer, tsh-backup-verify.timer]
    resume_timer: tsh-backup-resume.timer
"""

RETURN = r"""
files: {description: Backup files the command wrote (basenames)., type: list, returned: always}
paused: {description: Timers paused., type: list, returned: always}
steps: {description: The systemctl calls made, as "verb unit"., type: list, returned: always}
"""

import os  # noqa: E402
import subprocess  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.tsh.infra.plugins.module_utils.tsh_steplock import hold_for_step  # noqa: E402
from ansible_collections.tsh.infra.plugins.module_utils.tsh_backup import BackupError, run_phase  # noqa: E402


def main():
    module = AnsibleModule(
        argument_spec={
            "database": {"type": "str", "required": True},
            "port": {"type": "int", "default": 5432},
            "check_database": {"type": "bool", "default": True},
            "command": {"type": "str", "default": ""},
            "version": {"type": "str", "default": ""},
            "timers": {"type": "list", "elements": "str", "default": []},
            "resume_timer": {"type": "str", "default": ""},
            "host": {"type": "str", "default": "the database host"},
        },
    )
    # One deploy step at a time on this host, also against a step a killed run left running.
    _step_lock = hold_for_step(module, "tsh_deploy_backup")
    p = module.params

    def run(argv, env=None):
        # Over SSH the working directory is root's home, which the postgres user cannot enter.
        proc = subprocess.run(argv, capture_output=True, text=True, errors="replace", check=False, cwd="/",
                              env={**os.environ, **(env or {})})
        return proc.returncode, proc.stdout, proc.stderr

    try:
        result = run_phase(run, database=p["database"], port=p["port"], host=p["host"], check=p["check_database"],
                           timers=p["timers"], resume_timer=p["resume_timer"], command=p["command"],
                           version=p["version"])
    except BackupError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
