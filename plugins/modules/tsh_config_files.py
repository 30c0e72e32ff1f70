#!/usr/bin/python
"""Ansible module: write a service's whole configuration, test it, and put it back on failure, in one round trip."""

from __future__ import annotations

DOCUMENTATION = r"""
module: tsh_config_files
short_description: Write a set of configuration files, test them as a whole, put everything back when the test fails
description:
  - Creates O(directories), writes each of O(files) whose content, mode or owner differ (through a
    temporary file and one rename), makes each of O(links) when it is missing, and removes the entries
    of each O(prune) directory that are neither kept nor written. Then runs O(validate) on the result.
  - When the test fails, every change of this call is put back (old content, removed files, pruned
    entries) and the module fails with the test's message; the running service is never reloaded
    with a configuration that failed its test. Notify the reload handler from the task.
  - The action plugin of the same name renders O(files[].src) templates on the controller first.
  - The logic is in plugins/module_utils/tsh_config_files.py (unit tests in tests/unit/test_config_files.py).
  - Supports check mode and diff mode.
options:
  files:
    description: >-
      Files, each C(dest), C(content) (or C(src), a template the action plugin renders with C(vars)),
      C(mode), C(validate) (a test of that file alone before it replaces C(dest), with C(%s) for it),
      and C(owner) and C(group) when they differ from the call's.
      Instead of C(content), C(lines) sets lines of a file that exists (the distribution's): a list
      of C(regexp) and C(line); the last line matching C(regexp) becomes C(line), or C(line) is
      appended (put first with C(at=start)). Such a file keeps its mode unless C(mode) is given.
    type: list
    elements: dict
    default: []
  directories: {description: 'Directories, each C(path), C(mode), C(owner), C(group).', type: list, elements: dict, default: []}
  links: {description: 'Links made only when missing, each C(path) and C(src).', type: list, elements: dict, default: []}
  prune: {description: 'Directories whose other entries are removed, each C(path) and C(keep) (names).', type: list, elements: dict, default: []}
  validate: {description: The test of the whole configuration (argv)., type: list, elements: str, default: []}
  service: {description: The service's name, for the messages., type: str, default: the service}
  owner: {description: Owner of the files., type: str, default: root}
  group: {description: Group of the files., type: str, default: root}
"""

EXAMPLES = r"""
- name: Write and test the nginx configuration
  tsh_config_files:
    files:
      - {src: nginx.conf.j2, dest: /etc/nginx/nginx.conf}
      - {src: site.conf.j2, dest: /etc/nginx/sites-enabled/erp.conf, vars: {site: {name: erp}}}
    prune: [{path: /etc/nginx/sites-enabled}]
    validate: [nginx, -t]
    service: nginx
  notify: Reload nginx
"""

RETURN = r"""
paths: {description: The paths changed (or that would change)., type: list, returned: always}
"""

import grp  # noqa: E402
import pwd  # noqa: E402
import subprocess  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.tsh.infra.plugins.module_utils.tsh_config_files import ConfigError, apply  # noqa: E402


def main():
    module = AnsibleModule(
        argument_spec={
            "files": {"type": "list", "elements": "dict", "default": []},
            "directories": {"type": "list", "elements": "dict", "default": []},
            "links": {"type": "list", "elements": "dict", "default": []},
            "prune": {"type": "list", "elements": "dict", "default": []},
            "validate": {"type": "list", "elements": "str", "default": []},
            "service": {"type": "str", "default": "the service"},
            "owner": {"type": "str", "default": "root"},
            "group": {"type": "str", "default": "root"},
        },
        supports_check_mode=True,
    )
    p = module.params

    def ids(owner, group):
        try:
            return pwd.getpwnam(owner).pw_uid, grp.getgrnam(group).gr_gid
        except KeyError as exc:
            module.fail_json(msg=f"tsh_config_files: unknown user or group {exc}")

    uid, gid = ids(p["owner"], p["group"])
    directories = []
    for item in p["directories"]:
        d_uid, d_gid = ids(item.get("owner") or "root", item.get("group") or "root")
        directories.append({"path": item["path"], "mode": item.get("mode"), "uid": d_uid, "gid": d_gid})
    for item in p["files"]:
        if item.get("owner") or item.get("group"):
            item["uid"], item["gid"] = ids(item.get("owner") or p["owner"], item.get("group") or p["group"])
        if "dest" not in item or ("content" in item) == ("lines" in item):
            module.fail_json(msg=f"tsh_config_files: every file needs dest and one of content (or src) and lines: "
                                 f"{item.get('dest')}")

    def run(argv):
        proc = subprocess.run(argv, capture_output=True, text=True, errors="replace", check=False)
        return proc.returncode, proc.stdout, proc.stderr

    try:
        result = apply(p["files"], run=run, directories=directories, links=p["links"], prune=p["prune"],
                       validate=p["validate"], service=p["service"], uid=uid, gid=gid, check=module.check_mode)
    except (ConfigError, OSError) as exc:
        module.fail_json(msg=str(exc))
    if not module._diff:
        result.pop("diff")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
