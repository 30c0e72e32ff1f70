#!/usr/bin/python
"""Ansible module: the deploy lock on the web host, one step in one round trip (logic in
module_utils/tsh_lock.py; the controller's side, who this run is and whether another run is gone, in
plugins/action/tsh_deploy_lock.py)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: tsh_deploy_lock
short_description: Take, check, release or break the deploy lock
description:
  - The lock is the directory O(path), made with mkdir (atomic), holding holder.json (renamed into place)
    with the holder, version, operation, start and the run that holds it (controller host name, boot id,
    ansible-playbook pid and that process's start time).
  - Runs through its action plugin, which fills in this run's controller facts and token, and decides on
    the controller whether the run holding the lock is provably gone.
  - C(state=acquired) takes the lock. A lock whose run is provably gone (same controller, that process
    ended or is another process now, or a lock directory left without holder.json for over 60 s) is
    broken at once, with a warning saying so. Any other lock is refused with its holder, operation,
    version, age and controller, and the command that breaks it (playbooks/unlock.yml). A lock this run
    already holds is left unchanged.
  - C(state=inspected) reads the lock and judges it (verdict free, this_run, gone, alive, taking or
    unknown; RV(report) says it in words). With O(this_run) it fails unless this run holds the lock.
  - C(state=released) removes the lock only when this run holds it; otherwise it leaves it and warns.
  - C(state=broken) removes the lock when its run is provably gone, or when O(confirm) is the token the
    report showed; otherwise it fails and changes nothing.
options:
  state: {description: What to do., type: str, choices: [acquired, inspected, released, broken], default: inspected}
  path: {description: The lock directory., type: path, required: true}
  version: {description: The release (or rollback, restore) recorded as the lock's version., type: str, default: ""}
  operation: {description: deploy, rollback or restore., type: str, default: deploy}
  this_run: {description: With state=inspected, fail unless this run holds the lock., type: bool, default: false}
  confirm: {description: With state=broken, the lock's token (from the report) to break a lock whose run may still go., type: str, default: ""}
  token: {description: Set by the action plugin (this run's token)., type: str, default: ""}
  holder: {description: Set by the action plugin (GITHUB_ACTOR or the user, at the controller)., type: str, default: ""}
  controller: {description: Set by the action plugin (host, boot_id, pid, pid_start)., type: dict, default: {}}
  break_id: {description: Set by the action plugin (the lock to break before taking it)., type: str, default: ""}
"""

EXAMPLES = r"""
- name: Take the deploy lock
  tsh_deploy_lock:
    state: acquired
    path: /opt/tsh_erp/deploy/lock
    version: "2026.12.02-1"
    operation: deploy

- name: Release the deploy lock (only this run's)
  tsh_deploy_lock:
    state: released
    path: /opt/tsh_erp/deploy/lock
"""

RETURN = r"""
lock: {description: "The lock as found (state free, held, taking or torn; holder, id, age in seconds).", type: dict, returned: always}
acquired: {description: Whether this run holds the lock now., type: bool, returned: state=acquired}
record: {description: The holder record of this run's lock (state=acquired) or of the lock found (state=inspected)., type: dict, returned: "state=acquired, inspected"}
broke: {description: The lock broken, if any., type: dict, returned: "state=acquired, broken"}
released: {description: Whether this run's lock was removed., type: bool, returned: state=released}
verdict: {description: free, this_run, gone, alive, taking or unknown., type: str, returned: state=inspected}
report: {description: The lock and what breaking it needs, in words., type: str, returned: state=inspected}
id: {description: The lock's token (what unlock_confirm must name)., type: str, returned: state=inspected}
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.tsh.infra.plugins.module_utils.tsh_lock import (  # noqa: E402
    ARGUMENT_SPEC, LockError, run_module,
)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        result = run_module(module.params, check_mode=module.check_mode)
    except (LockError, OSError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
