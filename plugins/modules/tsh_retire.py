#!/usr/bin/python
"""Ansible module: retire the old colour after a switch (drain, stop, boot follows traffic) in one round trip."""

from __future__ import annotations

DOCUMENTATION = r"""
module: tsh_retire
short_description: Let the old colour's connections drain, stop and disable it, enable the new one at boot
description:
  - Waits up to O(drain_timeout) seconds until no established TCP connection has the old colour's
    O(port) as its local port (nginx's old workers finish their requests after a reload). Draining
    is bounded, not a gate; after the timeout the stop still lets uvicorn finish in-flight requests
    (graceful shutdown), and C(open) says how many were left.
  - Then stops and disables O(old_unit) and enables O(new_unit) at boot, each only when needed.
  - With O(prune_keep) above 0, then keeps the newest O(prune_keep) releases under
    C(<base_dir>/releases) and the ones the colours use, and removes unused venvs (as
    M(tsh.infra.tsh_release_prune), in the same round trip).
  - The logic is in plugins/module_utils/tsh_colour.py (unit tests in tests/unit/test_colour.py).
extends_documentation_fragment: [tsh.infra.steplock]
options:
  old_unit: {description: The colour that served before; empty when none did., type: str, default: ""}
  new_unit: {description: The colour serving now., type: str, required: true}
  port: {description: The old colour's port; 0 skips the drain., type: int, default: 0}
  drain_timeout: {description: Seconds to wait for the old colour's connections to end., type: int, default: 30}
  base_dir: {description: The application's base directory (for the prune)., type: path, default: /opt/tsh_erp}
  prune_keep: {description: Releases to keep after the retire; 0 skips the prune., type: int, default: 0}
"""

EXAMPLES = r"""
- name: Retire blue after a switch to green
  tsh_retire:
    old_unit: tsh_erp-blue
    new_unit: tsh_erp-green
    port: 8001
    drain_timeout: 30
    prune_keep: 5
"""

RETURN = r"""
open: {description: Connections to the old colour still open when the wait ended., type: int, returned: always}
drain_seconds: {description: Seconds waited for the drain., type: float, returned: always}
changes: {description: What changed (units stopped, disabled, enabled)., type: list, returned: always}
pruned: {description: 'Releases and venvs the prune removed ({releases, venvs}).', type: dict, returned: always}
"""

import subprocess  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.tsh.infra.plugins.module_utils.tsh_steplock import hold_for_step  # noqa: E402
from ansible_collections.tsh.infra.plugins.module_utils.tsh_colour import (  # noqa: E402
    TCP_TABLES, RetireError, drain, established, retire,
)
from ansible_collections.tsh.infra.plugins.module_utils.tsh_release import prune  # noqa: E402


def _tables():
    texts = []
    for path in TCP_TABLES:
        try:
            with open(path, encoding="ascii") as handle:
                texts.append(handle.read())
        except FileNotFoundError:
            pass
    return texts


def main():
    module = AnsibleModule(
        argument_spec={
            "old_unit": {"type": "str", "default": ""},
            "new_unit": {"type": "str", "required": True},
            "port": {"type": "int", "default": 0},
            "drain_timeout": {"type": "int", "default": 30},
            "base_dir": {"type": "path", "default": "/opt/tsh_erp"},
            "prune_keep": {"type": "int", "default": 0},
        },
        supports_check_mode=True,
    )
    # One deploy step at a time on this host, also against a step a killed run left running.
    _step_lock = hold_for_step(module, "tsh_retire")
    p = module.params

    def run(argv):
        proc = subprocess.run(argv, capture_output=True, text=True, errors="replace", check=False)
        return proc.returncode, proc.stdout, proc.stderr

    still_open, waited = 0, 0.0
    if p["old_unit"] and p["old_unit"] != p["new_unit"] and p["port"] > 0 and not module.check_mode:
        still_open, waited = drain(lambda: established(p["port"], _tables()), p["drain_timeout"])
    try:
        changes = retire(run, p["old_unit"], p["new_unit"], check=module.check_mode)
    except RetireError as exc:
        module.fail_json(msg=f"tsh_retire: {exc}", open=still_open, drain_seconds=waited)
    # After the retire: the old colour's release stays (current-<colour> names it), for a rollback.
    pruned = {"releases": [], "venvs": []}
    if p["prune_keep"] > 0:
        try:
            pruned["releases"], pruned["venvs"] = prune(p["base_dir"], p["prune_keep"], check=module.check_mode)
        except OSError as exc:
            module.fail_json(msg=f"tsh_retire: the old colour is retired, but pruning old releases failed: {exc}",
                             changes=changes, open=still_open, drain_seconds=waited)
    module.exit_json(changed=bool(changes or pruned["releases"] or pruned["venvs"]), changes=changes,
                     open=still_open, drain_seconds=waited, pruned=pruned)


if __name__ == "__main__":
    main()
