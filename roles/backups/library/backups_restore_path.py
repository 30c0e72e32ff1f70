#!/usr/bin/python
"""Replace a directory's content with its copy in a files archive written by tsh-backup."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: backups_restore_path
short_description: Replace a directory with its copy from a tsh-backup files archive
description:
  - Extracts one directory (I(path), stored relative to C(/) as tsh-backup writes it) from a gzip'd tar
    into a work directory beside it, C(.<name>.tsh-restore), with the owners, modes and times of the
    archive, then swaps it with I(path) in one C(renameat2(RENAME_EXCHANGE)) and removes the old
    content. A kill at any point leaves I(path) with either its old or its new content; the next run
    discards the work directory and starts over.
  - Where the file system cannot exchange two names, the old directory is renamed into the work
    directory and the new one into place; a run after a kill between the two renames first puts the
    old one back.
  - A I(path) the archive does not hold is left as it is (C(changed=false), C(in_archive=false)).
  - Runs as root (to give files their owners). Check mode reports a change without reading the archive.
options:
  archive:
    description: The gzip'd tar (files_<stamp>.tar.gz), already checked against its checksum.
    type: path
    required: true
  path:
    description: Absolute directory to restore. Missing parent directories are created (root, 0755).
    type: path
    required: true
author: tsh-infra
"""

EXAMPLES = r"""
- name: Restore the uploads
  backups_restore_path:
    archive: /opt/tsh_erp/backups/files_20260101T023000Z.tar.gz
    path: /opt/tsh_erp/shared/app/images
"""

RETURN = r"""
in_archive:
  description: Whether the archive holds I(path).
  type: bool
  returned: always
swap:
  description: How the new content took the place of the old (exchange, rename, create; none when not in the archive).
  type: str
  returned: always
"""

import ctypes
import errno
import os
import shutil

from ansible.module_utils.basic import AnsibleModule

AT_FDCWD = -100
RENAME_EXCHANGE = 2


def exchange(a: str, b: str) -> bool:
    """Swap two names atomically; False when the C library or the file system cannot."""
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), a)


def main() -> None:
    module = AnsibleModule(
        argument_spec={"archive": {"type": "path", "required": True}, "path": {"type": "path", "required": True}},
        supports_check_mode=True,
    )
    archive, path = module.params["archive"], module.params["path"]
    if not os.path.isabs(path) or os.path.normpath(path) != path or path == "/":
        module.fail_json(msg=f"path must be a normalised absolute directory other than /, got {path!r}")
    if not os.path.isfile(archive):
        module.fail_json(msg=f"no archive {archive}")
    parent, name = os.path.split(path)
    work = os.path.join(parent, f".{name}.tsh-restore")
    old = os.path.join(work, "old")
    member = path.lstrip("/")
    new = os.path.join(work, "new", member)

    if os.path.lexists(path) and (os.path.islink(path) or not os.path.isdir(path)):
        module.fail_json(msg=f"{path} is not a directory; nothing was changed")
    if module.check_mode:
        module.exit_json(changed=True, in_archive=True, swap="none", msg=f"would restore {path} from {archive}")

    # A run killed between the two renames of the fallback: the old content goes back first.
    if not os.path.lexists(path) and os.path.isdir(old):
        os.rename(old, path)
    if os.path.lexists(work):
        shutil.rmtree(work)
    os.makedirs(parent, mode=0o755, exist_ok=True)
    os.mkdir(work, 0o700)
    os.mkdir(os.path.join(work, "new"), 0o700)

    rc, _out, err = module.run_command(
        ["tar", "--extract", "--gzip", "--file", archive, "--directory", os.path.join(work, "new"),
         "--same-owner", "--same-permissions", "--delay-directory-restore", "--", member],
        environ_update={"LC_ALL": "C"},
    )
    if not os.path.isdir(new):
        shutil.rmtree(work)
        if "Not found in archive" in err:
            module.exit_json(changed=False, in_archive=False, swap="none",
                             msg=f"{archive} does not hold {path}; left as it was")
        module.fail_json(msg=f"extracting {member} from {archive} failed (rc {rc}): {err.strip()}; {path} was not changed")
    if rc != 0:
        shutil.rmtree(work)
        module.fail_json(msg=f"extracting {member} from {archive} failed (rc {rc}): {err.strip()}; {path} was not changed")
    # The new content is on disk before it takes the old one's place.
    os.sync()

    if not os.path.lexists(path):
        os.rename(new, path)
        swap = "create"
    elif exchange(new, path):
        swap = "exchange"
    else:
        os.rename(path, old)
        os.rename(new, path)
        swap = "rename"
    shutil.rmtree(work)
    module.exit_json(changed=True, in_archive=True, swap=swap, msg=f"restored {path} from {archive} ({swap})")


if __name__ == "__main__":
    main()
