#!/usr/bin/python
"""Ansible module: install a checked release into the idle colour in one round trip."""

from __future__ import annotations

DOCUMENTATION = r"""
module: tsh_release_install
short_description: Unpack a release, link its shared paths, build its venv and point a colour at it
description:
  - Stops the idle colour's unit, unpacks the uploaded artifact into C(<base_dir>/releases/<version>)
    (through a temporary directory renamed when complete and checked against the controller's
    RELEASE.json; a release already there under the same id must be the same build), links the
    shared paths, builds a fresh venv C(<base_dir>/venvs/<colour>-<version>) from the release's
    wheelhouse (no package index) and only then repoints C(current-<colour>) and C(venvs/<colour>),
    each with one atomic rename.
  - Without I(colour) it only unpacks (a web host that serves the static frontends).
  - The logic is in plugins/module_utils/tsh_release.py (unit tests in tests/unit/test_release_install.py).
  - The venv is made without pip when pip's own wheel is on the host (python3-pip-whl, which
    python3-venv pulls in, or ensurepip's), and pip runs from that wheel (about 3 s less per
    install). Otherwise the venv gets its own pip, as C(python -m venv) does.
extends_documentation_fragment: [tsh.infra.steplock]
options:
  base_dir: {description: The application's base directory., type: path, required: true}
  version: {description: The release id., type: str, required: true}
  manifest: {description: The artifact's RELEASE.json as read on the controller., type: dict, required: true}
  artifact: {description: The uploaded artifact on the host (removed once unpacked)., type: path, required: true}
  colour: {description: The idle colour to install into; omit to only unpack., type: str, choices: [blue, green]}
  unit: {description: The idle colour's systemd unit, stopped first., type: str}
  python: {description: The interpreter that builds the venv., type: path, default: /usr/bin/python3}
  requirements: {description: The requirements file, relative to the release., type: str, default: requirements.txt}
  shared_paths: {description: Paths of the release linked to <base_dir>/shared., type: list, elements: str, default: []}
  owner: {description: Owner of new shared directories and seeded files., type: str}
  group: {description: Group of new shared directories and seeded files., type: str}
"""

EXAMPLES = r"""
- name: Install the release into the idle colour
  tsh_release_install:
    base_dir: /opt/tsh_erp
    version: 2026.12.01-1
    manifest: "{{ __deploy_manifest }}"
    artifact: /opt/tsh_erp/releases/.incoming-2026.12.01-1.tar.gz
    colour: green
    unit: tsh_erp-green
    shared_paths: [app/images]
    owner: tsh_erp
    group: tsh_erp
"""

RETURN = r"""
unpacked: {description: Whether the artifact was unpacked in this run., type: bool, returned: always}
linked: {description: Shared paths linked in this run., type: list, returned: always}
seeded: {description: Files copied from the release into a new shared directory., type: int, returned: always}
seconds: {description: Seconds per step (stop, unpack, shared_paths, venv)., type: dict, returned: always}
"""

import grp  # noqa: E402
import pwd  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.tsh.infra.plugins.module_utils.tsh_steplock import hold_for_step  # noqa: E402
from ansible_collections.tsh.infra.plugins.module_utils.tsh_release import InstallError, find_pip_wheel, install  # noqa: E402


def main():
    module = AnsibleModule(
        argument_spec={
            "base_dir": {"type": "path", "required": True},
            "version": {"type": "str", "required": True},
            "manifest": {"type": "dict", "required": True},
            "artifact": {"type": "path", "required": True},
            "colour": {"type": "str", "choices": ["blue", "green"]},
            "unit": {"type": "str"},
            "python": {"type": "path", "default": "/usr/bin/python3"},
            "requirements": {"type": "str", "default": "requirements.txt"},
            "shared_paths": {"type": "list", "elements": "str", "default": []},
            "owner": {"type": "str"},
            "group": {"type": "str"},
        },
        supports_check_mode=True,
    )
    # One deploy step at a time on this host, also against a step a killed run left running.
    _step_lock = hold_for_step(module, "tsh_release_install")
    p = module.params
    # The owner matters for new shared directories only (a web host without the app has no app user).
    try:
        uid = pwd.getpwnam(p["owner"]).pw_uid if p["owner"] and p["shared_paths"] else None
        gid = grp.getgrnam(p["group"]).gr_gid if p["group"] and p["shared_paths"] else None
    except KeyError as exc:
        module.fail_json(msg=f"tsh_release_install: unknown user or group {exc}")

    def run(argv):
        return module.run_command(argv)

    try:
        result = install(run, p["base_dir"], p["version"], p["manifest"], p["artifact"], colour=p["colour"],
                         unit=p["unit"], python=p["python"], requirements=p["requirements"],
                         shared_paths=p["shared_paths"], uid=uid, gid=gid, check=module.check_mode,
                         pip_wheel=find_pip_wheel())
    except InstallError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
