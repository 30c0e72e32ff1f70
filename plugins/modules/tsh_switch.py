#!/usr/bin/python
"""Ansible module: move nginx between the blue and green upstreams in one step, or repair a switch a
kill interrupted (logic in module_utils/tsh_switch.py)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: tsh_switch
short_description: Switch nginx's active upstream safely, or make the link agree with nginx
description:
  - C(state=switched) writes an intent file, points the active link at O(to), runs C(nginx -t), reloads
    nginx and confirms through nginx (the X-TSH-Color header its upstream files send to loopback clients,
    and the release id when O(version_field) is set) that O(to) answers. On any failure the previous link
    is put back (and nginx reloaded again if it had been) and the module fails saying so.
  - C(state=reconciled) compares the link, the colour nginx serves now and the intent of an interrupted
    switch, and points the link at what nginx serves, so no later reload moves traffic without a gate.
    Fails, changing nothing, when nginx does not answer.
extends_documentation_fragment: [tsh.infra.steplock]
options:
  state: {description: What to do., type: str, choices: [switched, reconciled], default: reconciled}
  link: {description: The active upstream link., type: path, default: /etc/nginx/upstreams/tsh_erp_active.conf}
  upstream_name: {description: Prefix of the upstream files (<name>_blue.conf, <name>_green.conf)., type: str, default: tsh_erp}
  intent_file: {description: Where the switch under way is recorded., type: path, required: true}
  to: {description: The colour to switch to (state=switched)., type: str, choices: [blue, green]}
  expected_from: {description: The colour the link must name now ('' for none); anything else is refused., type: str, default: ""}
  version: {description: The release switched to (for the record and the version check)., type: str, default: ""}
  version_field: {description: Dotted field of the health answer holding the release id; empty to skip., type: str, default: ""}
  api_host: {description: The API's server name (SNI and Host of the check)., type: str, required: true}
  health_path: {description: Path asked through nginx., type: str, default: /health}
  port: {description: nginx's HTTPS port on this host., type: int, default: 443}
  confirm_timeout: {description: Seconds to wait for nginx to route to the new colour., type: int, default: 10}
  request_timeout: {description: Seconds for each request to nginx., type: int, default: 5}
  static_release_dir: {description: 'With state=switched, the release whose static frontends (static/<name>) follow traffic once nginx routes to O(to); empty: none.', type: path, default: ""}
  static_sites: {description: Site name to the path nginx serves it from (see M(tsh.infra.tsh_static_links))., type: dict, default: {}}
  enable_unit: {description: 'With state=switched, a unit on this host enabled at boot before traffic moves (the new colour, when the web host is an app host).', type: str, default: ""}
"""

EXAMPLES = r"""
- name: Make the link agree with what nginx serves
  tsh_switch:
    state: reconciled
    intent_file: /opt/tsh_erp/deploy/switch.json
    api_host: erp.tsh.sale

- name: Switch traffic to green
  tsh_switch:
    state: switched
    to: green
    expected_from: blue
    version: "2026.12.02-1"
    intent_file: /opt/tsh_erp/deploy/switch.json
    api_host: erp.tsh.sale
"""

RETURN = r"""
message: {description: What reconcile found and did ('' when link and nginx agreed)., type: str, returned: state=reconciled}
link: {description: The colour the link names afterwards., type: str, returned: state=reconciled}
routed: {description: The colour nginx serves (null when it does not say)., type: str, returned: state=reconciled}
intent: {description: The interrupted switch found, if any., type: dict, returned: state=reconciled}
from: {description: The colour that served before., type: str, returned: state=switched}
to: {description: The colour that serves now., type: str, returned: state=switched}
followed: {description: The static sites whose link changed (null without static_release_dir)., type: list, returned: state=switched}
"""

import subprocess  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.tsh.infra.plugins.module_utils.tsh_steplock import hold_for_step  # noqa: E402
from ansible_collections.tsh.infra.plugins.module_utils.tsh_release import (  # noqa: E402
    InstallError, link_static, static_conflict, static_undo,
)
from ansible_collections.tsh.infra.plugins.module_utils.tsh_switch import Switcher, SwitchError, probe  # noqa: E402


def main():
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "choices": ["switched", "reconciled"], "default": "reconciled"},
            "link": {"type": "path", "default": "/etc/nginx/upstreams/tsh_erp_active.conf"},
            "upstream_name": {"type": "str", "default": "tsh_erp"},
            "intent_file": {"type": "path", "required": True},
            "to": {"type": "str", "choices": ["blue", "green"]},
            "expected_from": {"type": "str", "default": ""},
            "version": {"type": "str", "default": ""},
            "version_field": {"type": "str", "default": ""},
            "api_host": {"type": "str", "required": True},
            "health_path": {"type": "str", "default": "/health"},
            "port": {"type": "int", "default": 443},
            "confirm_timeout": {"type": "int", "default": 10},
            "request_timeout": {"type": "int", "default": 5},
            "enable_unit": {"type": "str", "default": ""},
            "static_release_dir": {"type": "path", "default": ""},
            "static_sites": {"type": "dict", "default": {}},
        },
        required_if=[("state", "switched", ["to"])],
        supports_check_mode=True,
    )
    # One deploy step at a time on this host, also against a step a killed run left running.
    _step_lock = hold_for_step(module, "tsh_switch")
    p = module.params

    def run(argv):
        proc = subprocess.run(argv, capture_output=True, text=True, errors="replace", check=False)
        return proc.returncode, proc.stdout, proc.stderr

    def ask():
        return probe(p["api_host"], p["health_path"], port=p["port"], timeout=p["request_timeout"])

    switcher = Switcher(p["link"], p["intent_file"], run, ask, name=p["upstream_name"],
                        confirm_timeout=p["confirm_timeout"])
    then = None
    if p["state"] == "switched" and p["static_release_dir"] and p["static_sites"]:
        release_dir, sites = p["static_release_dir"], p["static_sites"]
        # Refused before traffic moves, nothing changed.
        problem = static_conflict(release_dir, sites)
        if problem:
            module.fail_json(msg=f"tsh_switch: {problem}. Nothing was switched.")

        def then():
            if module.check_mode:
                return link_static(release_dir, sites, check=True)
            undo = static_undo(sites)
            try:
                return link_static(release_dir, sites)
            except (InstallError, OSError) as exc:
                undo()
                raise SwitchError(f"Linking the static frontends of {release_dir} failed after nginx moved to "
                                  f"{p['to']} ({exc}); they point where they did") from exc

    try:
        if p["state"] == "switched":
            result = switcher.switch(p["to"], p["expected_from"], p["version"], p["version_field"],
                                     check_mode=module.check_mode, enable_unit=p["enable_unit"], then=then)
        else:
            result = switcher.reconcile(check_mode=module.check_mode)
    except SwitchError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
