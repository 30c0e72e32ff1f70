#!/usr/bin/python
"""Ansible module: the deploy's health gate, one round trip on the host."""

from __future__ import annotations

DOCUMENTATION = r"""
module: tsh_health_gate
short_description: Wait, within a bounded time, until a colour answers its health contract
description:
  - Polls O(url) until an answer meets the health contract (status codes, JSON fields, optionally
    the release id) or O(timeout) seconds have passed. The whole call ends within O(timeout) plus
    about a second, whatever the application does (never healthy, slow, accepts and hangs).
  - With O(unit), an answer counts only when the process listening on O(port) is the unit's main
    process or one of its workers, running in O(release_dir) and started at or after O(not_before)
    (the host's clock before the deploy restarted the unit). A leftover process on the port, an
    old release or a cached answer cannot pass.
  - With O(then), once that passes, the same contract is asked of a second URL (nginx's preview
    listener on this host, which reaches the colour on the path public traffic will take), within
    its own O(then.timeout), in the same round trip; a failure there is reported under its O(then.label).
  - Never changes anything on the host.
options:
  url: {description: URL to GET., type: str, required: true}
  headers: {description: Extra request headers (Host, preview colour)., type: dict, default: {}}
  timeout: {description: Wall-time budget in seconds for the whole gate., type: float, required: true}
  request_timeout: {description: Budget of one request in seconds., type: float, default: 5}
  interval: {description: 'Pause between attempts in seconds (a deploy waits at most this long past the first healthy answer).', type: float, default: 0.25}
  status_codes: {description: Accepted HTTP status codes., type: list, elements: int, default: [200]}
  expect: {description: 'Dotted JSON fields and the values they must have, e.g. C({status: healthy}).', type: dict, default: {}}
  expect_if_present: {description: Like O(expect), checked only when the field is in the answer., type: dict, default: {}}
  version_field: {description: Dotted JSON field that must equal O(version); empty skips the check., type: str, default: ""}
  version: {description: The release id the answer must report in O(version_field)., type: str, default: ""}
  unit: {description: systemd unit whose main process must hold O(port); empty skips the identity proof., type: str, default: ""}
  port: {description: TCP port the unit listens on (required with O(unit))., type: int}
  release_dir: {description: Directory the unit's main process must run in (resolved)., type: str, default: ""}
  not_before: {description: Epoch seconds (host clock) the main process must have started at or after., type: float}
  label: {description: Name used in messages, e.g. C(tsh_erp-green)., type: str, default: the service}
  then:
    description: A second gate with the same contract, after the first passes (no identity proof).
    type: dict
    suboptions:
      url: {description: URL to GET., type: str, required: true}
      headers: {description: Extra request headers., type: dict, default: {}}
      timeout: {description: Wall-time budget in seconds for this gate., type: float, required: true}
      label: {description: Name used in messages., type: str, default: the second check}
"""

EXAMPLES = r"""
- name: Gate the idle colour
  tsh_health_gate:
    url: http://127.0.0.1:8002/health
    timeout: 60
    expect: {status: healthy}
    unit: tsh_erp-green
    port: 8002
    release_dir: /opt/tsh_erp/releases/2026.12.01-1
    not_before: 1796166000.5
"""

RETURN = r"""
passed: {description: Whether the gate passed., type: bool, returned: always}
attempts: {description: Requests made., type: int, returned: always}
elapsed: {description: Seconds the gate took., type: float, returned: always}
status: {description: HTTP status of the last answer (0 without one)., type: int, returned: always}
last_answer: {description: The last answer, shortened, or why there was none., type: str, returned: always}
problems: {description: How the last answer missed the contract., type: list, returned: always}
identity_problem: {description: Why the port's holder was not the new release ('' when it was)., type: str, returned: always}
then: {description: The second gate's result (same keys), when O(then) was given and the first passed., type: dict, returned: when asked}
"""

import subprocess  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.tsh.infra.plugins.module_utils.tsh_health import (  # noqa: E402
    describe_contract, identity_problem, run_gate,
)


# systemctl asks PID 1 over D-Bus, which a loaded host can keep waiting for seconds: one call gets
# the gate's time left, and never less than this, so it cannot stretch the gate by more.
MIN_SYSTEMCTL_S = 1.0


def _main_pid(unit, seconds):
    """(MainPID of unit, 0 when it is not running; '' or why it could not be read in time)."""
    budget = max(seconds, MIN_SYSTEMCTL_S)
    try:
        out = subprocess.run(
            ["systemctl", "show", "--property=MainPID", "--value", unit],
            capture_output=True, text=True, check=False, timeout=budget,
        ).stdout.strip()
    except subprocess.TimeoutExpired:
        return 0, f"systemctl show {unit} did not answer within {budget:.1f} s (PID 1 is busy)"
    return (int(out) if out.isdigit() else 0), ""


def main():
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "required": True},
            "headers": {"type": "dict", "default": {}},
            "timeout": {"type": "float", "required": True},
            "request_timeout": {"type": "float", "default": 5.0},
            "interval": {"type": "float", "default": 0.25},
            "status_codes": {"type": "list", "elements": "int", "default": [200]},
            "expect": {"type": "dict", "default": {}},
            "expect_if_present": {"type": "dict", "default": {}},
            "version_field": {"type": "str", "default": ""},
            "version": {"type": "str", "default": ""},
            "unit": {"type": "str", "default": ""},
            "port": {"type": "int"},
            "release_dir": {"type": "str", "default": ""},
            "not_before": {"type": "float"},
            "label": {"type": "str", "default": "the service"},
            "then": {"type": "dict", "options": {
                "url": {"type": "str", "required": True},
                "headers": {"type": "dict", "default": {}},
                "timeout": {"type": "float", "required": True},
                "label": {"type": "str", "default": "the second check"},
            }},
        },
        supports_check_mode=True,
    )
    p = module.params
    if p["unit"] and not p["port"]:
        module.fail_json(msg="tsh_health_gate: port is required with unit")
    if p["timeout"] <= 0:
        module.fail_json(msg="tsh_health_gate: timeout must be above 0")
    contract = {
        "status_codes": p["status_codes"],
        "expect": p["expect"],
        "expect_if_present": p["expect_if_present"],
        "version_field": p["version_field"],
        "version": p["version"],
    }
    identity = None
    if p["unit"]:
        def identity(seconds):
            main_pid, slow = _main_pid(p["unit"], seconds)
            return slow or identity_problem(main_pid, p["port"], p["release_dir"], p["not_before"])

    result = run_gate(p["url"], contract, p["timeout"], p["request_timeout"], p["interval"],
                      p["headers"], identity)
    result["changed"] = False
    if not result["passed"]:
        _fail(module, p["label"], p["url"], p["timeout"], contract, result)
    then = p["then"]
    if then:
        second = run_gate(then["url"], contract, then["timeout"], p["request_timeout"], p["interval"],
                          then["headers"], None)
        if not second["passed"]:
            _fail(module, then["label"], then["url"], then["timeout"], contract, {**second, "first": result})
        result["then"] = second
    module.exit_json(**result)


def _fail(module, label, url, timeout, contract, result):
    wanted = describe_contract(contract)
    if result["identity_problem"] and not result["problems"]:
        why = f"it answered the contract, but not as the new release: {result['identity_problem']}"
    elif result["identity_problem"]:
        why = f"{'; '.join(result['problems'])}; and {result['identity_problem']}"
    else:
        why = "; ".join(result["problems"])
    module.fail_json(
        msg=(f"{label} did not pass the health gate within {timeout:g} s "
             f"({result['attempts']} attempts in {result['elapsed']:.1f} s; wanted {wanted} from {url}): "
             f"{why}. "
             f"Last answer: {result['last_answer']}"),
        **result,
    )


if __name__ == "__main__":
    main()
