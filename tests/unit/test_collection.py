"""The repository as the collection tsh.infra (galaxy.yml): built and installed offline into a temporary
directory, then used by its fully qualified names from a directory that knows nothing of this checkout
(an empty ansible.cfg, ANSIBLE_COLLECTIONS_PATH naming only the installation): the documentation, a
module whose payload must carry its module_utils, action plugins, filters, roles and playbooks. And the
checkout itself, through collections/ansible_collections/tsh/infra, by short names and by FQCN."""

from __future__ import annotations

import ast
import json
import os
import pathlib
import re
import subprocess
import sys
import tarfile

import pytest

from conftest import REPO

BIN = pathlib.Path(sys.executable).parent
PLAYBOOKS = sorted(p.stem for p in (REPO / "playbooks").glob("*.yml"))
GROUPS = "[web]\nlocalhost\n[app]\nlocalhost\n[db]\nlocalhost\n"


def _run(cmd, cwd, env, timeout=120):
    run = subprocess.run([str(BIN / cmd[0]), *cmd[1:]], capture_output=True, text=True, cwd=cwd, env=env,
                         timeout=timeout, check=False, stdin=subprocess.DEVNULL)
    return run.returncode, run.stdout + run.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(tarball, env, cwd): tsh.infra built and installed (without its dependencies: the `ansible`
    package carries them, and Galaxy may not be reachable) under a temporary collections path."""
    tmp = tmp_path_factory.mktemp("collection")
    (tmp / "empty.cfg").write_text("")
    (tmp / "cwd").mkdir()
    env = dict(os.environ, ANSIBLE_CONFIG=str(tmp / "empty.cfg"), ANSIBLE_COLLECTIONS_PATH=str(tmp / "installed"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_LOCALHOST_WARNING="false")
    for name in ("ANSIBLE_LIBRARY", "ANSIBLE_MODULE_UTILS", "ANSIBLE_ACTION_PLUGINS", "ANSIBLE_FILTER_PLUGINS",
                 "ANSIBLE_ROLES_PATH", "ANSIBLE_COLLECTIONS_PATHS"):
        env.pop(name, None)
    rc, out = _run(["ansible-galaxy", "collection", "build", "--output-path", str(tmp / "dist"), str(REPO)],
                   cwd=tmp / "cwd", env=env)
    assert rc == 0, out
    tarball = tmp / "dist/tsh-infra-1.0.0.tar.gz"
    rc, out = _run(["ansible-galaxy", "collection", "install", "--no-deps", "-p", str(tmp / "installed"),
                    str(tarball)], cwd=tmp / "cwd", env=env)
    assert rc == 0 and "tsh.infra:1.0.0 was installed successfully" in out, out
    return tarball, env, tmp / "cwd"


def test_the_artifact_holds_what_an_installer_needs_and_nothing_of_the_test_bed(installed):
    tarball, _, _ = installed
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    tops = {name.split("/", 1)[0] for name in names}
    assert {"MANIFEST.json", "FILES.json", "README.md", "meta", "plugins", "roles", "playbooks"} <= tops
    assert not tops & {"tests", "molecule", "bench", "inventories", "collections", ".venv", ".git", "build",
                       ".molecule-logs", ".collections", ".ansible", "ansible.cfg", "Makefile"}, sorted(tops)
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert tarball.stat().st_size < 1_000_000, tarball.stat().st_size


def test_ansible_doc_reads_a_module_by_its_fqcn(installed):
    _, env, cwd = installed
    rc, out = _run(["ansible-doc", "tsh.infra.tsh_units"], cwd=cwd, env=env)
    assert rc == 0, out
    assert "installed/ansible_collections/tsh/infra/plugins/modules/tsh_units.py" in out and "units" in out


def test_ansible_doc_reads_every_module_of_the_installed_collection(installed):
    """Each module's DOCUMENTATION, EXAMPLES and RETURN parse, with the doc fragments they extend
    (plugins/doc_fragments): a colon-space in a description once broke three modules' pages."""
    _, env, cwd = installed
    names = sorted(f"tsh.infra.{p.stem}" for p in (REPO / "plugins/modules").glob("*.py"))
    rc, out = _run(["ansible-doc", "--json", *names], cwd=cwd, env=env)
    assert rc == 0 and "[ERROR]" not in out, out[-3000:]
    docs, _ = json.JSONDecoder().raw_decode(out[out.index("{"):])  # warnings may follow on stderr
    assert sorted(docs) == names
    for name, page in docs.items():
        assert page["doc"]["short_description"], name
        assert page["examples"] and page["return"] is not None, name
    assert any("deploy step lock" in note for note in docs["tsh.infra.tsh_switch"]["doc"]["notes"])


PLAY = """\
- name: Use tsh.infra by its fully qualified names
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Check that bash is installed (action plugin, then the module with its module_utils in the payload)
      tsh.infra.tsh_packages:
        name: [bash]
        state: present
      check_mode: true
      register: packages
    - name: Take the deploy lock (action plugin importing module_utils on the controller, then the module)
      tsh.infra.tsh_deploy_lock:
        state: acquired
        path: "{{ lock }}"
        version: v1
      register: taken
    - name: Release it
      tsh.infra.tsh_deploy_lock:
        state: released
        path: "{{ lock }}"
      register: released
    - name: Look for an artifact that is not there
      tsh.infra.tsh_artifact:
        release_version: v9
        build_dir: "{{ lock }}-builds"
      register: artifact
      ignore_errors: true
    - name: Say what came back
      ansible.builtin.debug:
        msg: "RESULT {{ {'packages': packages.msg, 'taken': taken.changed, 'released': released.changed,
              'artifact': artifact.msg,
              'networks': ['10.0.0.0/8', 'office'] | tsh.infra.tsh_invalid_networks,
              'table': {} | tsh.infra.tsh_status([]) | tsh.infra.tsh_status_table} | to_json }} END"
"""


def _result(out):
    return json.loads(out.split("RESULT ", 1)[1].split(" END", 1)[0].replace('\\"', '"'))


def test_modules_action_plugins_and_filters_run_by_their_fqcn(installed, tmp_path):
    _, env, cwd = installed
    (tmp_path / "play.yml").write_text(PLAY)
    rc, out = _run(["ansible-playbook", "-i", "localhost,", "-c", "local", str(tmp_path / "play.yml"),
                    "-e", f"lock={tmp_path / 'lock'}", "-e", f"ansible_python_interpreter={sys.executable}"],
                   cwd=cwd, env=env)
    assert rc == 0, out
    result = _result(out)
    assert result["packages"] == "installed: bash"
    assert result["taken"] is True and result["released"] is True
    assert result["artifact"].startswith(f"No artifact at {tmp_path / 'lock'}-builds/tsh_erp-v9.tar.gz")
    assert result["networks"] == ["office"]
    assert result["table"] == ["No app host answered: nothing to report."]


def test_roles_and_playbooks_load_by_their_fqcn(installed, tmp_path):
    """--list-tasks resolves every statically loaded task's module and role, so a short name in a
    role or playbook that does not resolve inside the installed collection fails here. The task
    files the playbooks include dynamically (playbooks/tasks) are imported by a play added to the
    installed copy, so they are resolved as the collection's playbooks resolve them."""
    _, env, cwd = installed
    (tmp_path / "hosts.ini").write_text(GROUPS)
    collection = pathlib.Path(env["ANSIBLE_COLLECTIONS_PATH"]) / "ansible_collections/tsh/infra"
    tasks = sorted((collection / "playbooks/tasks").glob("*.yml"))
    assert tasks
    (collection / "playbooks/zz_every_task_file.yml").write_text(
        "- name: Import every shared task file\n  hosts: all\n  gather_facts: false\n  tasks:\n"
        + "".join(f"    - name: Import {t.name}\n      ansible.builtin.import_tasks: tasks/{t.name}\n" for t in tasks))
    roles = sorted(p.name for p in (REPO / "roles").iterdir() if (p / "meta/argument_specs.yml").is_file())
    roles.remove("tsh")
    roles.insert(0, "tsh")  # first, as in every play: the others' defaults read it
    (tmp_path / "site.yml").write_text(
        "- name: Use every role by its FQCN\n  hosts: all\n  gather_facts: false\n  roles:\n"
        + "".join(f"    - role: tsh.infra.{role}\n" for role in roles)
        + "".join(f"- name: Import {p}\n  ansible.builtin.import_playbook: tsh.infra.{p}\n"
                  for p in [*PLAYBOOKS, "zz_every_task_file"]))
    rc, out = _run(["ansible-playbook", "-i", str(tmp_path / "hosts.ini"), "--syntax-check", str(tmp_path / "site.yml")],
                   cwd=cwd, env=env)
    assert rc == 0, out
    rc, out = _run(["ansible-playbook", "-i", str(tmp_path / "hosts.ini"), "--list-tasks", str(tmp_path / "site.yml")],
                   cwd=cwd, env=env)
    assert rc == 0, out
    for role in roles:
        assert f"tsh.infra.{role} : " in out, role
    # A collection playbook by its own name, as ansible-playbook runs it.
    rc, out = _run(["ansible-playbook", "-i", str(tmp_path / "hosts.ini"), "--list-tasks", "tsh.infra.deploy"],
                   cwd=cwd, env=env)
    assert rc == 0 and "ansible_collections/tsh/infra/playbooks/deploy.yml" in out, out


def _filter_names():
    names = set()
    for path in (REPO / "plugins/filter").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and node.name == "filters":
                returned = [n for n in ast.walk(node) if isinstance(n, ast.Return)][0].value
                names |= {key.value for key in returned.keys}
    return names


def test_roles_and_playbooks_name_the_filters_by_their_fqcn():
    """Unlike modules, a filter's short name does not resolve inside the installed collection's roles
    and playbooks (only through this checkout's ansible.cfg); the plays run them only at run time,
    after --list-tasks has passed."""
    names = _filter_names()
    assert {"tsh_invalid_networks", "tsh_status_table"} <= names
    short = re.compile(r"\|\s*(" + "|".join(sorted(names)) + r")\b")
    found = [f"{path.relative_to(REPO)}:{number}: {line.strip()}"
             for folder in ("roles", "playbooks")
             for path in sorted((REPO / folder).rglob("*")) if path.suffix in (".yml", ".j2")
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if short.search(line)]
    assert not found, "name these filters tsh.infra.<name>:\n" + "\n".join(found)


def test_the_checkout_is_the_collection_by_short_names_and_by_fqcn(tmp_path):
    """From a checkout, with its ansible.cfg: collections/ansible_collections/tsh/infra is this
    directory, so the modules' payloads find their module_utils whether the task names the module
    by its short name (ansible.cfg's library) or by its FQCN."""
    assert (REPO / "collections/ansible_collections/tsh/infra").resolve() == REPO
    (tmp_path / "play.yml").write_text("""\
- name: Use the checkout's plugins by both names
  hosts: localhost
  gather_facts: false
  tasks:
    - name: By the short name
      tsh_packages:
        name: [bash]
        state: present
      check_mode: true
      register: short
    - name: By the FQCN
      tsh.infra.tsh_packages:
        name: [bash]
        state: present
      check_mode: true
      register: fqcn
    - name: Say what came back
      ansible.builtin.debug:
        msg: "RESULT {{ {'short': short.msg, 'fqcn': fqcn.msg, 'filter': ['x'] | tsh_invalid_networks,
              'filter_fqcn': ['x'] | tsh.infra.tsh_invalid_networks} | to_json }} END"
""")
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    for name in ("ANSIBLE_COLLECTIONS_PATH", "ANSIBLE_LIBRARY", "ANSIBLE_MODULE_UTILS"):
        env.pop(name, None)
    rc, out = _run(["ansible-playbook", "-i", "localhost,", "-c", "local", str(tmp_path / "play.yml"),
                    "-e", f"ansible_python_interpreter={sys.executable}"], cwd=tmp_path, env=env)
    assert rc == 0, out
    assert _result(out) == {"short": "installed: bash", "fqcn": "installed: bash", "filter": ["x"], "filter_fqcn": ["x"]}
