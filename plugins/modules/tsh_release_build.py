#!/usr/bin/python
"""Build a TSH ERP release directory on the controller (playbooks/build.yml)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: tsh_release_build
short_description: Build a TSH ERP release directory (backend files, wheelhouse, manifest)
description:
  - Runs on the controller (C(localhost)). Selects the backend's files from a directory or a git
    ref, copies them into O(dest), downloads binary wheels of every requirement for each target
    CPython, and writes C(VERSION), C(FAULTS.json) (tests only) and C(RELEASE.json) (sha256 of every
    file). C(playbooks/build.yml) packs O(dest) into the artifact.
  - A requirement without a wheel for a target Python fails naming the package, its version and the
    Python, unless it is pure Python - its source distribution is then built into a C(py3-none-any)
    wheel on the controller.
  - pip evaluates requirement markers with the controller's Python; the module follows the wheels'
    requirements with each target Python's markers and downloads what that Python needs too
    (for example C(exceptiongroup) for 3.10 when the controller runs 3.11).
  - The logic lives in C(plugins/module_utils/tsh_release_build.py), unit-tested in
    C(tests/unit/test_release_build*.py).
options:
  src:
    description: Directory holding the backend (or the repository with it in O(subdir)). Relative paths
      are taken from O(base_dir). Exactly one of O(src) and O(repo) with O(ref).
    type: str
    default: ""
  repo:
    description: Git repository to export O(ref) from (C(git archive)); relative paths from O(base_dir).
    type: str
    default: ""
  ref:
    description: Branch, tag or commit of O(repo).
    type: str
    default: ""
  base_dir:
    description: Directory relative O(src), O(repo) and O(artifact_dir) are taken from (the directory
      C(ansible-playbook) runs in). Required when one of them is relative.
    type: path
  subdir:
    description: Subdirectory of the source that is the backend root ('' for the source itself).
    type: str
    default: ""
  include:
    description:
      - Paths or globs relative to the backend root that ship; a directory brings everything below it.
        Empty ships everything. An entry that matches nothing fails the build.
      - O(requirements) and O(always_include) ship whenever present.
    type: list
    elements: str
    default: []
  exclude:
    description:
      - Globs that never ship, gitignore-like - without a C(/) a name at any depth, with one anchored at
        the backend root, a trailing C(/) for directories only, C(**) across directories. Excludes win
        over includes.
      - Not given means C(.git), C(__pycache__), C(*.pyc), C(/build/).
    type: list
    elements: str
  ignore_file:
    description: File at the backend root with more exclude globs, one a line, C(#) comments; '' for none. It does not ship itself.
    type: str
    default: .releaseignore
  always_include:
    description: Paths that ship whenever present even when O(include) names others (the frontends).
    type: list
    elements: str
    default: []
  requirements:
    description: Requirements file at the backend root; always ships.
    type: str
    default: requirements.txt
  python_versions:
    description:
      - Target CPython versions, quoted strings such as C("3.11").
      - When given, O(host_python_versions) is not used.
    type: list
    elements: raw
    default: []
  host_python_versions:
    description:
      - Each app host's answer for its Python, for example C(tsh-prod-1=3.10).
      - The unique versions are the targets; a host without a usable answer fails the build.
    type: dict
    default: {}
  platforms:
    description: Platform tags wheels are downloaded for.
    type: list
    elements: str
    default: [manylinux_2_28_x86_64, manylinux_2_17_x86_64, manylinux2014_x86_64]
  implementation:
    description: Python implementation tag for C(pip download --implementation).
    type: str
    default: cp
  pip_python:
    description: Python whose pip downloads and builds the wheels (default the module's own interpreter).
    type: path
  pip_options:
    description: Extra options for every pip call, for example C([--no-index, --find-links, /srv/wheels]).
    type: list
    elements: str
    default: []
  version:
    description: Release id; empty means C(git describe --tags --always) of O(ref), or the UTC build time for O(src).
    type: str
    default: ""
  faults:
    description: Test hook written to C(FAULTS.json) when not empty.
    type: dict
    default: {}
  dest:
    description: Staging directory for the release; created, must be empty when present.
    type: path
    required: true
  artifact_dir:
    description: Directory for the artifact; created. Relative paths from O(base_dir). The result names the artifact.
    type: path
notes:
  - Check mode resolves the source and the target Pythons and reports what would ship; it copies and downloads nothing.
author: tsh-infra
"""

EXAMPLES = r"""
- name: Build the release directory
  tsh_release_build:
    src: ../tsh-erp-backend
    base_dir: /home/me/tsh-infra
    include: [app, requirements.txt, config, database]
    always_include: [static/admin, static/consumer]
    host_python_versions: {tsh-prod-1: "3.10"}
    dest: /tmp/tsh-build-x/release
    artifact_dir: build/releases
  register: __build

- name: Build offline from a local wheel directory
  tsh_release_build:
    src: /srv/backend
    python_versions: ["3.11"]
    pip_options: [--no-index, --find-links, /srv/wheels]
    dest: /tmp/tsh-build-y/release
"""

RETURN = r"""
version:
  description: The release id.
  returned: always
  type: str
  sample: 2026.11.29-1
source:
  description: The resolved source (a directory, or repository@ref).
  returned: always
  type: str
python_versions:
  description: The target CPython versions, sorted.
  returned: always
  type: list
  sample: ["3.10", "3.11"]
files:
  description: Number of backend files shipped (wheels and generated files not counted).
  returned: always
  type: int
top_level:
  description: Top-level entries of the backend root that ship.
  returned: always
  type: list
  sample: [app, config, database, requirements.txt]
include:
  description: The include list used.
  returned: always
  type: list
exclude:
  description: The exclude globs used.
  returned: always
  type: list
releaseignore:
  description: The globs read from the ignore file.
  returned: always
  type: list
artifact:
  description: Where the artifact goes (artifact_dir/tsh_erp-<version>.tar.gz).
  returned: when artifact_dir is given
  type: str
wheels:
  description: Wheel file names in the wheelhouse.
  returned: when not in check mode
  type: list
built_from_sdist:
  description: Wheels built on the controller from pure-Python source distributions.
  returned: when not in check mode
  type: list
added_for_markers:
  description: Per target Python, requirements downloaded because that Python's markers need them.
  returned: when not in check mode
  type: dict
source_bytes:
  description: Total size of the backend files shipped.
  returned: when not in check mode
  type: int
"""

import sys

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.tsh.infra.plugins.module_utils.tsh_release_build import (
    ARGUMENT_SPEC, BuildError, build, run_command,
)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = dict(module.params)
    params["pip_python"] = params["pip_python"] or sys.executable

    try:
        result = build(params, run_command, check_mode=module.check_mode)
    except BuildError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
