#!/usr/bin/python
"""Ansible module: the whole ufw firewall (rules, policies, logging, status) in one round trip."""

from __future__ import annotations

DOCUMENTATION = r"""
module: tsh_ufw
short_description: Set ufw's allow rules, default policies and logging, and enable it, changing only the difference
description:
  - Reads what ufw holds once (C(ufw show added), C(ufw status), C(/etc/default/ufw),
    C(/etc/ufw/ufw.conf)), compares it by meaning with the wanted rules and runs only the ufw
    commands that close the difference. An unchanged firewall costs two ufw calls.
  - Rules are compared by meaning, so a source written C(203.0.113.10/32) matches the
    C(203.0.113.10) ufw stores and is never deleted as stale.
  - Order within a run, so that no step closes SSH to a listed source; new allow rules, then the
    removal of rules nothing asks for, then the default policies and logging, then C(ufw enable).
  - The logic is in plugins/module_utils/tsh_ufw.py (unit tests in tests/unit/test_ufw.py).
  - Supports check mode and diff mode.
options:
  ssh_port: {description: The port sshd listens on., type: int, default: 22}
  ssh_sources:
    description: Addresses or CIDR networks allowed to reach SSH.
    type: list
    elements: str
    default: []
  ssh_from_anywhere: {description: Allow SSH from anywhere instead of from I(ssh_sources)., type: bool, default: false}
  open_tcp_ports: {description: TCP ports open to everyone., type: list, elements: int, default: []}
  extra_rules:
    description: Further allow rules, each C(port) (required), C(proto) (tcp or udp) and C(from).
    type: list
    elements: dict
    default: []
  policies:
    description: Default policy per direction (incoming, outgoing, routed).
    type: dict
    default: {incoming: deny, outgoing: allow, routed: deny}
  logging: {description: ufw's logging level., type: str, default: low, choices: [off, low, medium, high, full]}
"""

EXAMPLES = r"""
- name: Set the firewall
  tsh_ufw:
    ssh_port: 22
    ssh_sources: [203.0.113.10/32, 198.51.100.0/28]
    open_tcp_ports: [80, 443]
    extra_rules:
      - {port: 5432, proto: tcp, from: 10.10.0.0/24}
"""

RETURN = r"""
added: {description: Rule lines added., type: list, returned: always}
removed: {description: Rule lines removed (nothing asked for them)., type: list, returned: always}
policies: {description: Default policies changed, by direction., type: dict, returned: always}
logging: {description: The logging level set, or null when it was already right., type: str, returned: always}
enabled: {description: Whether this run enabled the firewall., type: bool, returned: always}
commands: {description: The ufw commands run (or, in check mode, that would run)., type: list, returned: always}
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.tsh.infra.plugins.module_utils.tsh_ufw import UfwError, reconcile, wanted_rules  # noqa: E402


def main():
    module = AnsibleModule(
        argument_spec={
            "ssh_port": {"type": "int", "default": 22},
            "ssh_sources": {"type": "list", "elements": "str", "default": []},
            "ssh_from_anywhere": {"type": "bool", "default": False},
            "open_tcp_ports": {"type": "list", "elements": "int", "default": []},
            "extra_rules": {"type": "list", "elements": "dict", "default": []},
            "policies": {"type": "dict", "default": {"incoming": "deny", "outgoing": "allow", "routed": "deny"}},
            "logging": {"type": "str", "default": "low", "choices": ["off", "low", "medium", "high", "full"]},
        },
        supports_check_mode=True,
    )
    p = module.params
    try:
        wanted = wanted_rules(p["ssh_port"], p["ssh_sources"], p["ssh_from_anywhere"], p["open_tcp_ports"],
                              p["extra_rules"])
    except UfwError as exc:
        module.fail_json(msg=f"tsh_ufw: {exc}")
    ufw = module.get_bin_path("ufw")
    if ufw is None:
        if module.check_mode:
            # The apt task before this one would have installed it.
            module.exit_json(changed=True, added=wanted, removed=[], policies=p["policies"], logging=p["logging"],
                             enabled=True, commands=[], msg="ufw is not installed yet")
        module.fail_json(msg="tsh_ufw: the ufw command is not installed (the ufw role installs it first)")

    def run(argv):
        return module.run_command([ufw, *argv[1:]], environ_update={"LC_ALL": "C"})

    def read(path):
        try:
            with open(path, encoding="utf-8") as handle:
                return handle.read()
        except FileNotFoundError:
            return ""

    try:
        result = reconcile(run, read, wanted, p["policies"], p["logging"], check=module.check_mode)
    except UfwError as exc:
        module.fail_json(msg=f"tsh_ufw: {exc}")
    if not module._diff:
        result.pop("diff")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
