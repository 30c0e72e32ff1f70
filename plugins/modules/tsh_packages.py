#!/usr/bin/python
"""Ansible module: which of the wanted Debian packages are installed, read from dpkg's status file."""

from __future__ import annotations

DOCUMENTATION = r"""
module: tsh_packages
short_description: Install Debian packages, checking dpkg's database before calling apt
description:
  - Takes the arguments of M(ansible.builtin.apt) with O(state=present). The action plugin first runs
    this module, which reads C(/var/lib/dpkg/status) and reports the wanted packages that are not
    installed; only when some are missing (or a name is not a plain package name) does it run
    M(ansible.builtin.apt) with the same arguments. On a provisioned host that is one light round
    trip instead of apt's cache load.
  - With every package installed, an expired O(cache_valid_time) does not update the package lists,
    as nothing would be installed from them (unattended-upgrades updates them on its own).
  - The logic is in plugins/module_utils/tsh_packages.py (unit tests in tests/unit/test_packages.py).
options:
  name: {description: Package names., type: list, elements: str, required: true}
"""

EXAMPLES = r"""
- name: Install nginx
  tsh_packages:
    name: [nginx]
    state: present
    update_cache: true
    cache_valid_time: 3600
"""

RETURN = r"""
installed: {description: Wanted names that dpkg lists as installed., type: list, returned: always}
missing: {description: Wanted names that are not installed., type: list, returned: always}
unknown: {description: Wanted names only apt can judge (versions, wildcards, architectures, paths)., type: list, returned: always}
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.tsh.infra.plugins.module_utils.tsh_packages import STATUS_FILE, check  # noqa: E402


def main():
    module = AnsibleModule(argument_spec={"name": {"type": "list", "elements": "str", "required": True}},
                           supports_check_mode=True)
    try:
        with open(STATUS_FILE, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError as exc:
        module.fail_json(msg=f"tsh_packages: cannot read {STATUS_FILE}: {exc}")
    module.exit_json(changed=False, **check(module.params["name"], text))


if __name__ == "__main__":
    main()
