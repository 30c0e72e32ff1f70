#!/usr/bin/python
"""Documentation of the action plugin tsh_phase (plugins/action/tsh_phase.py), which runs on the
controller only; like ansible.builtin's set_fact, the module of its name holds no code, only what
ansible-doc tsh.infra.tsh_phase shows."""

from __future__ import annotations

DOCUMENTATION = r"""
module: tsh_phase
short_description: Open a deploy phase and time the one before, on the controller
description:
  - Closes the phase open on this host (its duration, start to now, goes into C(__deploy_durations)) and
    opens O(name), setting C(__deploy_phase) and C(__deploy_phase_started). Without O(name) it only
    closes the open phase (the end of the run); C(__deploy_phase) keeps naming it.
  - The deploy and rollback playbooks call it at each phase's start; a failure message names
    C(__deploy_phase), and the audit record holds C(__deploy_durations).
  - Runs on the controller only, no connection to a host. The logic is plugins/module_utils/tsh_phase.py
    (unit tests in tests/unit/test_phase.py).
  - The facts are host facts. A C(set_fact) of the same names would take precedence over them, so
    nothing else may set them; a fact cache may keep them, so a run starts with O(reset).
options:
  name:
    description: The phase to open; empty closes the open one only.
    type: str
    default: ""
  reset:
    description: Forget every phase before (the start of a run).
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Start phase install
  tsh_phase:
    name: install
"""

RETURN = r"""
ansible_facts:
  description: __deploy_phase, __deploy_phase_started (epoch seconds, null when none is open) and __deploy_durations.
  type: dict
  returned: always
"""
