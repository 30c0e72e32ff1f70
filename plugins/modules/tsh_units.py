#!/usr/bin/python
"""Ansible module: bring several systemd units to their state with one read, in one round trip."""

from __future__ import annotations

DOCUMENTATION = r"""
module: tsh_units
short_description: Start or stop, enable or disable several systemd units in one call
description:
  - Reads the state of every unit in O(units) with one C(systemctl show), then runs only the
    C(systemctl enable), C(disable), C(start) or C(stop) calls that bring each to what it asks (in
    the order given, enable before start). A loop of M(ansible.builtin.systemd_service) needs one
    round trip per unit.
  - A unit systemd does not know fails the call before anything changes.
  - The logic is in plugins/module_utils/tsh_units.py (unit tests in tests/unit/test_units.py).
  - Supports check mode.
options:
  units:
    description: "Each C(name), C(state) (started, stopped, or restarted: always restarted; omitted, left as it is) and C(enabled) (omitted, left as it is)."
    type: list
    elements: dict
    required: true
  daemon_reload: {description: Run systemctl daemon-reload first., type: bool, default: false}
"""

EXAMPLES = r"""
- name: Start the timers and enable them at boot
  tsh_units:
    units:
      - {name: tsh-backup.timer, state: started, enabled: true}
      - {name: tsh-backup-verify.timer, state: started, enabled: true}
"""

RETURN = r"""
steps: {description: 'The systemctl calls made (or that would be), as "verb unit".', type: list, returned: always}
"""

import subprocess  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.tsh.infra.plugins.module_utils.tsh_units import UnitError, apply  # noqa: E402


def main():
    module = AnsibleModule(
        argument_spec={
            "units": {"type": "list", "elements": "dict", "required": True},
            "daemon_reload": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    units = []
    for item in module.params["units"]:
        if not item.get("name"):
            module.fail_json(msg=f"tsh_units: every unit needs a name: {item}")
        enabled = item.get("enabled")
        units.append({"name": str(item["name"]), "state": item.get("state"),
                      "enabled": None if enabled is None else module.boolean(enabled)})

    def run(argv):
        proc = subprocess.run(argv, capture_output=True, text=True, errors="replace", check=False)
        return proc.returncode, proc.stdout, proc.stderr

    try:
        result = apply(units, run, check=module.check_mode, daemon_reload=module.params["daemon_reload"])
    except (UnitError, OSError) as exc:
        module.fail_json(msg=f"tsh_units: {exc}")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
