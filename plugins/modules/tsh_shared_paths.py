#!/usr/bin/python
"""Ansible module: link a release's shared paths (uploads) to directories that outlive releases."""

from __future__ import annotations

DOCUMENTATION = r"""
module: tsh_shared_paths
short_description: Link directories of a release to shared directories that survive releases
description:
  - For each relative path P (e.g. C(app/images)), makes C(<release_dir>/P) a symlink to
    C(<shared_dir>/P), like ansistrano's shared_paths or Capistrano's linked_dirs.
  - The first time a shared directory is created, it is seeded with what the release ships at P
    (existing files in it are never overwritten). The release's own copy is then replaced by the link.
  - Safe to re-run after a kill at any point; an already linked path is left alone.
options:
  release_dir: {description: The release directory (not yet serving)., type: path, required: true}
  shared_dir: {description: Root of the shared directories., type: path, required: true}
  paths: {description: Paths relative to the release., type: list, elements: str, required: true}
  owner: {description: Owner of created shared directories and seeded files., type: str}
  group: {description: Group of created shared directories and seeded files., type: str}
  mode: {description: Mode of created shared directories., type: str, default: "0750"}
"""

EXAMPLES = r"""
- name: Link the uploads into the release
  tsh_shared_paths:
    release_dir: /opt/tsh_erp/releases/2026.12.01-1
    shared_dir: /opt/tsh_erp/shared
    paths: [app/images]
    owner: tsh_erp
    group: tsh_erp
"""

RETURN = r"""
linked: {description: Paths linked in this run., type: list, returned: always}
seeded: {description: Files copied from the release into a new shared directory., type: int, returned: always}
"""

import grp  # noqa: E402
import os  # noqa: E402
import pwd  # noqa: E402
import shutil  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402


def bad_paths(paths):
    """Paths that are not plain relative paths inside the release."""
    bad = []
    for path in paths:
        norm = os.path.normpath(path)
        if not path or os.path.isabs(path) or norm.startswith("..") or norm in (".", ""):
            bad.append(path)
    return bad


def _chown(path, uid, gid):
    if uid is not None or gid is not None:
        os.lchown(path, -1 if uid is None else uid, -1 if gid is None else gid)


def _seed(source, target, uid, gid):
    """Copy source's tree into target without overwriting; return the number of files copied."""
    copied = 0
    for root, dirs, files in os.walk(source):
        rel = os.path.relpath(root, source)
        dest_root = target if rel == "." else os.path.join(target, rel)
        for name in dirs:
            dest = os.path.join(dest_root, name)
            if not os.path.exists(dest):
                os.mkdir(dest)
                shutil.copymode(os.path.join(root, name), dest)
                _chown(dest, uid, gid)
        for name in files:
            dest = os.path.join(dest_root, name)
            if not os.path.lexists(dest):
                tmp = dest + ".tsh-seed"
                shutil.copy2(os.path.join(root, name), tmp)
                _chown(tmp, uid, gid)
                os.rename(tmp, dest)
                copied += 1
    return copied


def link_shared(release_dir, shared_dir, paths, uid=None, gid=None, mode=0o750, check=False):
    """Link each path; returns (linked, seeded). Each step is atomic (mkdir, rename)."""
    linked = []
    seeded = 0
    for path in paths:
        norm = os.path.normpath(path)
        inside = os.path.join(release_dir, norm)
        shared = os.path.join(shared_dir, norm)
        if os.path.islink(inside) and os.readlink(inside) == shared:
            continue
        linked.append(norm)
        if check:
            continue
        if not os.path.isdir(shared):
            # Seed into a temporary directory renamed when complete: a kill leaves no half seed.
            parent = os.path.dirname(shared)
            os.makedirs(parent, exist_ok=True)
            tmp = shared + ".tsh-new"
            if os.path.lexists(tmp):
                shutil.rmtree(tmp)
            os.mkdir(tmp)
            os.chmod(tmp, mode)
            _chown(tmp, uid, gid)
            if os.path.isdir(inside) and not os.path.islink(inside):
                seeded += _seed(inside, tmp, uid, gid)
            os.rename(tmp, shared)
        os.makedirs(os.path.dirname(inside), exist_ok=True)
        link_tmp = inside + ".tsh-link"
        if os.path.lexists(link_tmp):
            os.unlink(link_tmp)
        os.symlink(shared, link_tmp)
        if os.path.isdir(inside) and not os.path.islink(inside):
            shutil.rmtree(inside)
        os.replace(link_tmp, inside)
    return linked, seeded


def main():
    module = AnsibleModule(
        argument_spec={
            "release_dir": {"type": "path", "required": True},
            "shared_dir": {"type": "path", "required": True},
            "paths": {"type": "list", "elements": "str", "required": True},
            "owner": {"type": "str"},
            "group": {"type": "str"},
            "mode": {"type": "str", "default": "0750"},
        },
        supports_check_mode=True,
    )
    p = module.params
    bad = bad_paths(p["paths"])
    if bad:
        module.fail_json(msg=f"tsh_shared_paths: not a path inside the release: {bad}; use relative paths such as app/images")
    if not os.path.isdir(p["release_dir"]):
        module.fail_json(msg=f"tsh_shared_paths: no release at {p['release_dir']}")
    try:
        uid = pwd.getpwnam(p["owner"]).pw_uid if p["owner"] else None
        gid = grp.getgrnam(p["group"]).gr_gid if p["group"] else None
    except KeyError as exc:
        module.fail_json(msg=f"tsh_shared_paths: unknown user or group {exc}")
    linked, seeded = link_shared(p["release_dir"], p["shared_dir"], p["paths"], uid, gid,
                                 int(p["mode"], 8), module.check_mode)
    module.exit_json(changed=bool(linked), linked=linked, seeded=seeded)


if __name__ == "__main__":
    main()
