#!/usr/bin/python
"""Ansible module: one host's part of the TSH ERP status, read in one round trip (logic in
module_utils/tsh_status.py; plugins/filter/tsh_status.py merges the parts and renders them)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: tsh_status
short_description: Read one host's part of the TSH ERP status (read-only)
description:
  - On an app host (O(parts) has C(app)) each colour's unit (active state, enabled at boot, uptime), the
    release it runs, the answer of its health path, the last O(audit_lines) records of the deploy audit
    log and the free space of the filesystem holding O(base_dir).
  - On the web host (C(web)) the colour the active link names, the colour nginx routes to (the
    X-TSH-Color header, as tsh_switch reads it), what a reconcile would find, the deploy lock and the
    certificate's expiry.
  - On the db host (C(db)) the last successful backup (the backups role's status file) and its size.
  - Changes nothing and never fails because a part is missing; a missing part reads null.
options:
  parts: {description: Which parts this host holds., type: list, elements: str, choices: [app, web, db], required: true}
  web_host: {description: The web host in front of this app host (returned for the merge)., type: str, default: ""}
  backup_host: {description: The db host of this app host (returned for the merge)., type: str, default: ""}
  base_dir: {description: The app's base directory (current-<colour> links; its filesystem's free space)., type: path, default: /opt/tsh_erp}
  ports: {description: Each colour's port., type: dict, default: {blue: 8001, green: 8002}}
  address: {description: Where the colours listen., type: str, default: 127.0.0.1}
  health_path: {description: The app's health path., type: str, default: /health}
  request_timeout: {description: Seconds for each HTTP request., type: int, default: 3}
  audit_log: {description: The deploy audit log (one JSON record a line)., type: path, default: /opt/tsh_erp/deploy/audit.log}
  audit_lines: {description: How many of the last records to return., type: int, default: 5}
  link: {description: nginx's active upstream link., type: path, default: /etc/nginx/upstreams/tsh_erp_active.conf}
  upstream_name: {description: Prefix of the upstream files., type: str, default: tsh_erp}
  intent_file: {description: The record of a switch under way (tsh_switch)., type: path, default: /opt/tsh_erp/deploy/switch.json}
  api_host: {description: The API's server name (SNI and Host of the probe through nginx)., type: str, default: erp.tsh.sale}
  nginx_port: {description: nginx's HTTPS port on this host., type: int, default: 443}
  lock_dir: {description: The deploy lock directory., type: path, default: /opt/tsh_erp/deploy/lock}
  lock_ttl: {description: Age in seconds after which the lock is flagged as stale., type: int, default: 1800}
  certificate: {description: The certificate nginx serves., type: path, default: /etc/ssl/tsh/fullchain.pem}
  backup_file: {description: The backups role's status file., type: path, default: /var/lib/tsh-backups/backup.json}
  backup_dir: {description: Where the backup files are., type: path, default: /opt/tsh_erp/backups}
"""

EXAMPLES = r"""
- name: Gather this host's part of the status
  tsh_status:
    parts: [app, web, db]
  register: __status_part
"""

RETURN = r"""
parts: {description: The parts read., type: list, returned: always}
app: {description: colours (unit, active, enabled, uptime_s, port, release, health), deploys, disk., type: dict, returned: app in parts}
web: {description: link, routed, nginx_status, disagreement, lock, certificate., type: dict, returned: web in parts}
db: {description: backup (last_success, age_s, label, files, size_bytes, missing_files) or null., type: dict, returned: db in parts}
"""

import os  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.tsh.infra.plugins.module_utils.tsh_status import (  # noqa: E402
    ask_http, gather_app, gather_db, gather_web,
)
from ansible_collections.tsh.infra.plugins.module_utils.tsh_switch import probe  # noqa: E402


def main():
    module = AnsibleModule(
        argument_spec={
            "parts": {"type": "list", "elements": "str", "choices": ["app", "web", "db"], "required": True},
            "web_host": {"type": "str", "default": ""},
            "backup_host": {"type": "str", "default": ""},
            "base_dir": {"type": "path", "default": "/opt/tsh_erp"},
            "ports": {"type": "dict", "default": {"blue": 8001, "green": 8002}},
            "address": {"type": "str", "default": "127.0.0.1"},
            "health_path": {"type": "str", "default": "/health"},
            "request_timeout": {"type": "int", "default": 3},
            "audit_log": {"type": "path", "default": "/opt/tsh_erp/deploy/audit.log"},
            "audit_lines": {"type": "int", "default": 5},
            "link": {"type": "path", "default": "/etc/nginx/upstreams/tsh_erp_active.conf"},
            "upstream_name": {"type": "str", "default": "tsh_erp"},
            "intent_file": {"type": "path", "default": "/opt/tsh_erp/deploy/switch.json"},
            "api_host": {"type": "str", "default": "erp.tsh.sale"},
            "nginx_port": {"type": "int", "default": 443},
            "lock_dir": {"type": "path", "default": "/opt/tsh_erp/deploy/lock"},
            "lock_ttl": {"type": "int", "default": 1800},
            "certificate": {"type": "path", "default": "/etc/ssl/tsh/fullchain.pem"},
            "backup_file": {"type": "path", "default": "/var/lib/tsh-backups/backup.json"},
            "backup_dir": {"type": "path", "default": "/opt/tsh_erp/backups"},
        },
        supports_check_mode=True,
    )
    p = module.params
    env = dict(os.environ, LC_ALL="C")

    def run(argv):
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, errors="replace", check=False, env=env,
                                  timeout=15)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return 127, "", str(exc)
        return proc.returncode, proc.stdout, proc.stderr

    result = {"changed": False, "parts": p["parts"], "web_host": p["web_host"], "backup_host": p["backup_host"],
              "audit_lines": p["audit_lines"]}
    now = time.time()
    if "app" in p["parts"]:
        result["app"] = gather_app(
            p["base_dir"], p["ports"], run,
            lambda port: ask_http(p["address"], port, p["health_path"], p["request_timeout"]),
            p["audit_log"], p["audit_lines"], time.monotonic(), unit_prefix=p["upstream_name"])
    if "web" in p["parts"]:
        result["web"] = gather_web(
            p["link"], p["intent_file"],
            lambda: probe(p["api_host"], p["health_path"], port=p["nginx_port"], timeout=p["request_timeout"]),
            p["lock_dir"], p["lock_ttl"], p["certificate"], run, now, name=p["upstream_name"])
    if "db" in p["parts"]:
        result["db"] = gather_db(p["backup_file"], p["backup_dir"], now)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
