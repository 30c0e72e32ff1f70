#!/usr/bin/python
"""Ansible module: refuse to start a second colour the host's memory cannot hold."""

from __future__ import annotations

DOCUMENTATION = r"""
module: tsh_memory_check
short_description: Check that memory can hold a second copy of the serving colour
description:
  - Sums the proportional set size of the serving unit's main process and its workers, and fails
    when the host's MemAvailable is below that plus O(margin_mb). Changes nothing.
options:
  serving_unit: {description: The unit serving now; empty when nothing serves (always passes)., type: str, default: ""}
  starting: {description: Name of the colour about to start, for the message., type: str, required: true}
  margin_mb: {description: Megabytes to keep free beyond the copy., type: int, default: 256}
"""

EXAMPLES = r"""
- name: Check memory for a second colour
  tsh_memory_check:
    serving_unit: tsh_erp-blue
    starting: tsh_erp-green
"""

RETURN = r"""
serving_mb: {description: Size of the serving colour in MB., type: int, returned: always}
available_mb: {description: MemAvailable in MB., type: int, returned: always}
needed_mb: {description: What the new colour needs in MB (its size plus the margin)., type: int, returned: always}
"""

import subprocess  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible.module_utils.tsh_health import descendants, footprint_kb, mem_available_kb, memory_verdict  # noqa: E402


def main():
    module = AnsibleModule(
        argument_spec={
            "serving_unit": {"type": "str", "default": ""},
            "starting": {"type": "str", "required": True},
            "margin_mb": {"type": "int", "default": 256},
        },
        supports_check_mode=True,
    )
    p = module.params
    main_pid = 0
    if p["serving_unit"]:
        out = subprocess.run(["systemctl", "show", "--property=MainPID", "--value", p["serving_unit"]],
                             capture_output=True, text=True, check=False).stdout.strip()
        main_pid = int(out) if out.isdigit() else 0
    pids = descendants(main_pid) if main_pid else []
    serving = sum(footprint_kb(pid) for pid in pids)
    available = mem_available_kb()
    fits, needed = memory_verdict(serving, available, p["margin_mb"])
    result = {"changed": False, "serving_mb": serving // 1024, "available_mb": available // 1024,
              "needed_mb": needed // 1024, "processes": len(pids)}
    if fits:
        module.exit_json(**result)
    module.fail_json(
        msg=(f"Not enough memory to start {p['starting']} beside {p['serving_unit']}: it uses "
             f"{serving // 1024} MB ({len(pids)} processes), so a second copy needs {needed // 1024} MB "
             f"with the {p['margin_mb']} MB margin, and the host has {available // 1024} MB available. "
             "Free memory, lower tsh_app_workers or resize the host; deploy_memory_margin_mb sets the "
             "margin and deploy_memory_check: false skips this check."),
        **result)


if __name__ == "__main__":
    main()
