#!/usr/bin/python
"""Documentation of the action plugin tsh_artifact (plugins/action/tsh_artifact.py), which runs on the
controller only; like ansible.builtin's set_fact or assert, the module of its name holds no code, only
what ansible-doc tsh.infra.tsh_artifact shows."""

from __future__ import annotations

DOCUMENTATION = r"""
module: tsh_artifact
short_description: Find a release artifact on the controller, check it and read its manifest
description:
  - Finds the artifact named by O(release_artifact), or C(tsh_erp-<release_version>.tar.gz) in
    O(build_dir), checks it against its C(.sha256) file when there is one, and reads its C(RELEASE.json);
    on the controller, in one step, without a round trip to a host.
  - Fails, naming the fix, without a release named, without the file, when the file does not match its
    C(.sha256) file, without a readable C(RELEASE.json), or when it holds another version than asked for.
  - Unit tests in tests/unit/test_artifact.py.
options:
  release_artifact: {description: Path of the artifact; takes precedence over O(release_version)., type: path, default: ""}
  release_version: {description: The release id; the artifact is O(build_dir)/tsh_erp-<id>.tar.gz., type: str, default: ""}
  build_dir: {description: Where playbooks/build.yml puts artifacts., type: path, default: ""}
"""

EXAMPLES = r"""
- name: Read and check the release on the controller
  tsh.infra.tsh_artifact:
    release_version: "{{ release_version }}"
    build_dir: build/releases
  register: __deploy_release
"""

RETURN = r"""
artifact: {description: The artifact's path., type: str, returned: success}
sha256: {description: Its SHA-256., type: str, returned: success}
sha1: {description: "Its SHA-1 (what ansible.builtin.copy's checksum option takes).", type: str, returned: success}
manifest: {description: Its RELEASE.json., type: dict, returned: success}
version: {description: The release id the manifest names., type: str, returned: success}
"""
