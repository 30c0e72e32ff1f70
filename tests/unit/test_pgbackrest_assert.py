"""The pgbackrest role's input checks for an S3 repository (roles/pgbackrest/tasks/assert.yml), run
without a target: each case is an inventory host with connection local on which only assert.yml
runs (it changes nothing); each bad setting must fail with a message naming the variable to fix,
and no secret may show."""

import json
import os
import platform
import subprocess
import sys

import pytest
import yaml

from conftest import REPO

SECRET = "s3-secret-that-must-never-show-0123"
GOOD = {
    "pgbackrest_repo_type": "s3",
    "pgbackrest_s3_bucket": "tsh-backups",
    "pgbackrest_s3_endpoint": "fra1.digitaloceanspaces.com",
    "pgbackrest_s3_region": "fra1",
    "vault_pgbackrest_s3_key": "DO00EXAMPLEKEY",
    "vault_pgbackrest_s3_key_secret": SECRET,
}
CASES = {
    "good": (GOOD, None),
    "nothing_set": ({"pgbackrest_repo_type": "s3"},
                    ["pgbackrest_s3_bucket must name the bucket", "pgbackrest_s3_endpoint must be the host name alone",
                     "pgbackrest_s3_region must be set",
                     "pgbackrest_s3_key and pgbackrest_s3_key_secret must be set (vault_pgbackrest_s3_key and "
                     "vault_pgbackrest_s3_key_secret in the vault)"]),
    "endpoint_url": ({**GOOD, "pgbackrest_s3_endpoint": "https://fra1.digitaloceanspaces.com"},
                     ["pgbackrest_s3_endpoint must be the host name alone, e.g. fra1.digitaloceanspaces.com "
                      "(no https://, port or path; got \"https://fra1.digitaloceanspaces.com\")"]),
    "with_repo_host": ({**GOOD, "pgbackrest_repo_host": "backup1"},
                       ["pgbackrest_repo_host names backup1, but an S3 repository has no repository host"]),
    "uri_style": ({**GOOD, "pgbackrest_s3_uri_style": "virtual"},
                  ["pgbackrest_s3_uri_style must be host or path (got \"virtual\")"]),
    "ca_missing": ({**GOOD, "pgbackrest_s3_ca_file": "/nonexistent/ca.pem"},
                   ["pgbackrest_s3_ca_file names /nonexistent/ca.pem, which is not a file on the controller"]),
    "short_cipher": ({**GOOD, "vault_pgbackrest_cipher_pass": "short"},
                     ["pgbackrest_cipher_pass must have at least 32 characters"]),
    "no_secret": ({**GOOD, "vault_pgbackrest_s3_key_secret": ""},
                  ["pgbackrest_s3_key and pgbackrest_s3_key_secret must be set"]),
    "unknown_type": ({**GOOD, "pgbackrest_repo_type": "gcs"},
                     ["pgbackrest_repo_type must be posix (a backup_repo host over SSH) or s3"]),
}
# Also in the backup_repo group: an S3 repository belongs to a db host alone.
ALSO_REPO = {"also_repo": ({**GOOD}, ["only a db host that is not in backup_repo can have an S3 repository"])}

PLAYBOOK = """
- name: Run the pgbackrest role's input checks
  hosts: all
  gather_facts: true
  gather_subset: [min]
  tasks:
    - name: Run assert.yml
      ansible.builtin.include_role:
        name: pgbackrest
        tasks_from: assert.yml
"""


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    if platform.system() != "Linux" or not any(
            name in open("/etc/os-release", encoding="utf-8").read() for name in ('ID=debian', 'ID=ubuntu')):
        pytest.skip("assert.yml first checks the OS release: needs a Debian or Ubuntu controller")
    tmp = tmp_path_factory.mktemp("pgbackrest-assert")
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    common = {"postgres_archive_command": "pgbackrest --stanza=tsh archive-push %p",
              "vault_pgbackrest_cipher_pass": "unit-test-cipher-passphrase-0123456789"}
    cases = {**CASES, **ALSO_REPO}
    inventory = {"all": {"vars": {**local, **common}, "children": {
        "db": {"hosts": {name: case[0] for name, case in cases.items()}},
        "backup_repo": {"hosts": {name: {} for name in ALSO_REPO}},
    }}}
    (tmp / "hosts.yml").write_text(yaml.safe_dump(inventory))
    (tmp / "play.yml").write_text(PLAYBOOK)
    env = {"ANSIBLE_ROLES_PATH": str(REPO / "roles"), "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
           "ANSIBLE_LOCALHOST_WARNING": "false",
           "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
           "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}
    run = subprocess.run(["ansible-playbook", "-i", str(tmp / "hosts.yml"), str(tmp / "play.yml")],
                         capture_output=True, text=True, cwd=tmp, env={**os.environ, **env}, check=False)
    assert "{" in run.stdout, run.stderr[-3000:]
    out = json.JSONDecoder().raw_decode(run.stdout[run.stdout.index("{"):])[0]
    failures = {}
    for play in out["plays"]:
        for task in play["tasks"]:
            for host, result in task["hosts"].items():
                if result.get("failed"):
                    failures[host] = result.get("msg", "")
    return run, failures, cases


@pytest.mark.parametrize("case", list(CASES) + list(ALSO_REPO))
def test_s3_settings_are_checked_with_the_variable_to_fix(results, case):
    run, failures, cases = results
    expected = cases[case][1]
    if expected is None:
        assert case not in failures, failures.get(case)
        return
    message = " ".join(failures.get(case, "").split())
    for text in expected:
        assert text in message, message


def test_no_secret_is_shown(results):
    run, _, _ = results
    assert SECRET not in run.stdout + run.stderr
