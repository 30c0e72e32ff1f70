#!/usr/bin/python
"""Ansible module: start (or restart) a colour, after checking memory can hold it beside the serving one."""

from __future__ import annotations

DOCUMENTATION = r"""
module: tsh_colour_start
short_description: Start a colour's unit once memory can hold it beside the serving one
description:
  - With O(check_memory), sums the proportional set size of the serving unit's main process and its
    workers, and fails, changing nothing, when the host's MemAvailable is below that plus O(margin_mb).
  - Then reads the host's clock and restarts O(unit). The clock reading (C(started_at)) is the health
    gate's identity floor, so only a main process started by this call can pass it.
  - One round trip. The memory arithmetic is in plugins/module_utils/tsh_health.py (unit tests in
    tests/unit/test_health_gate.py).
extends_documentation_fragment: [tsh.infra.steplock]
options:
  unit: {description: The unit to start or restart., type: str, required: true}
  serving_unit: {description: The unit serving now; empty when nothing serves (the memory check passes)., type: str, default: ""}
  check_memory: {description: Whether to check memory first., type: bool, default: true}
  margin_mb: {description: Megabytes to keep free beyond the copy., type: int, default: 256}
"""

EXAMPLES = r"""
- name: Start the idle colour
  tsh_colour_start:
    unit: tsh_erp-green
    serving_unit: tsh_erp-blue
"""

RETURN = r"""
serving_mb: {description: Size of the serving colour in MB., type: int, returned: check_memory}
available_mb: {description: MemAvailable in MB., type: int, returned: check_memory}
needed_mb: {description: What the new colour needs in MB (its size plus the margin)., type: int, returned: check_memory}
started_at: {description: The host's clock (epoch seconds) just before the restart., type: str, returned: success}
"""

import subprocess  # noqa: E402
import time  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.tsh.infra.plugins.module_utils.tsh_steplock import hold_for_step  # noqa: E402
from ansible_collections.tsh.infra.plugins.module_utils.tsh_health import (  # noqa: E402
    descendants, footprint_kb, mem_available_kb, memory_verdict,
)


def _check_memory(module, p):
    """Fail, changing nothing, when MemAvailable cannot hold a second copy of the serving unit plus
    the margin; otherwise return the figures."""
    main_pid = 0
    if p["serving_unit"]:
        out = subprocess.run(["systemctl", "show", "--property=MainPID", "--value", p["serving_unit"]],
                             capture_output=True, text=True, check=False).stdout.strip()
        main_pid = int(out) if out.isdigit() else 0
    pids = descendants(main_pid) if main_pid else []
    serving = sum(footprint_kb(pid) for pid in pids)
    available = mem_available_kb()
    fits, needed = memory_verdict(serving, available, p["margin_mb"])
    result = {"serving_mb": serving // 1024, "available_mb": available // 1024,
              "needed_mb": needed // 1024, "processes": len(pids)}
    if not fits:
        module.fail_json(
            msg=(f"Not enough memory to start {p['unit']} beside {p['serving_unit']}: it uses "
                 f"{serving // 1024} MB ({len(pids)} processes), so a second copy needs {needed // 1024} MB "
                 f"with the {p['margin_mb']} MB margin, and the host has {available // 1024} MB available. "
                 "Free memory, lower tsh_app_workers or resize the host; deploy_memory_margin_mb sets the "
                 "margin and deploy_memory_check: false skips this check."),
            **result)
    return result


def main():
    module = AnsibleModule(
        argument_spec={
            "unit": {"type": "str", "required": True},
            "serving_unit": {"type": "str", "default": ""},
            "check_memory": {"type": "bool", "default": True},
            "margin_mb": {"type": "int", "default": 256},
        },
        supports_check_mode=True,
    )
    # One deploy step at a time on this host, also against a step a killed run left running.
    _step_lock = hold_for_step(module, "tsh_colour_start")
    p = module.params
    result = _check_memory(module, p) if p["check_memory"] else {}
    started_at = f"{time.time():.6f}"
    if not module.check_mode:
        proc = subprocess.run(["systemctl", "restart", p["unit"]], capture_output=True, text=True,
                              errors="replace", check=False)
        if proc.returncode != 0:
            module.fail_json(msg=f"Unable to restart service {p['unit']}: {(proc.stderr or proc.stdout).strip()}",
                             **result)
    module.exit_json(changed=True, started_at=started_at, **result)


if __name__ == "__main__":
    main()
