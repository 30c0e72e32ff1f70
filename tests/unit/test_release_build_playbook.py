"""Unit tests for the release build through Ansible, offline (the package directory of
test_release_build_wheels.py): the tsh_release_build module in check mode, and playbooks/build.yml
with relative paths from the caller's directory and the target Pythons asked from the app hosts."""

import importlib.util
import json
import pathlib
import subprocess
import sys
import tarfile

REPO = pathlib.Path(__file__).resolve().parents[2]
_SPEC = importlib.util.spec_from_file_location("test_release_build_wheels",
                                               pathlib.Path(__file__).with_name("test_release_build_wheels.py"))
_WHEELS = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(_WHEELS)
backend, offline_env, CONTROLLER = _WHEELS.backend, _WHEELS.offline_env, _WHEELS.CONTROLLER
index = _WHEELS.index  # the fixture


def ansible_env(**extra):
    env = offline_env()
    env.update(ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", **extra)
    return env


def test_module_in_check_mode_writes_nothing(tmp_path):
    root = backend(tmp_path, ["tshcore==1.0"])
    args = {"src": "src/tsh_backend", "base_dir": str(tmp_path), "include": ["app", "requirements.txt"],
            "python_versions": ["3.11"], "dest": str(tmp_path / "stage/release"), "version": "c1"}
    proc = subprocess.run([str(pathlib.Path(sys.executable).parent / "ansible"), "localhost", "--check",
                           "-m", "tsh_release_build", "-a", json.dumps(args)],
                          capture_output=True, text=True, cwd=tmp_path, env=ansible_env(), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert '"top_level": [' in proc.stdout and '"app",' in proc.stdout and "mobile" not in proc.stdout
    assert root.exists() and not (tmp_path / "stage").exists()


def playbook(tmp_path, *args, cwd, inventory=None):
    cmd = [str(pathlib.Path(sys.executable).parent / "ansible-playbook"), str(REPO / "playbooks/build.yml"), *args]
    if inventory:
        cmd[1:1] = ["-i", str(inventory)]
    # A stale PWD, as when a program starts ansible-playbook in another directory.
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, check=False,
                          env=ansible_env(PWD=str(tmp_path / "stale")))


def app_inventory(tmp_path, hosts):
    lines = ["all:", "  children:", "    app:", "      hosts:"]
    for name, python in hosts.items():
        lines += [f"        {name}:", "          ansible_connection: local",
                  f"          ansible_python_interpreter: {sys.executable}", f"          tsh_app_python: {python}"]
    path = tmp_path / "hosts.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_playbook_relative_paths_and_pythons_from_the_app_hosts(tmp_path, index):
    root = backend(tmp_path, ["tshcore==1.0"])
    (root / "static/admin").mkdir(parents=True)
    (root / "static/admin/index.html").write_text("<html></html>\n")
    (root / ".releaseignore").write_text("app/images/\n")
    inventory = app_inventory(tmp_path, {"app1": sys.executable, "app2": sys.executable})
    extra = json.dumps({"build_include": ["app", "requirements.txt", "config", "database"],
                        "build_pip_options": ["--no-index", "--find-links", str(index), "--no-cache-dir"]})
    run_ = playbook(tmp_path, "-e", "app_src=tsh_backend", "-e", "build_dir=../out", "-e", "app_version=p1",
                    "-e", extra, cwd=tmp_path / "src", inventory=inventory)
    assert run_.returncode == 0, run_.stdout[-3000:] + run_.stderr[-2000:]
    artifact = tmp_path / "out/tsh_erp-p1.tar.gz"
    assert f"Built {artifact}" in run_.stdout
    # The controller runs the build in the action plugin and says what the download does meanwhile.
    assert f"build: wheels for CPython {CONTROLLER}: resolving the requirements" in run_.stdout
    assert f"build: wheels for CPython {CONTROLLER}: done after" in run_.stdout
    with tarfile.open(artifact) as tar:
        names = set(tar.getnames())
        manifest = json.load(tar.extractfile("RELEASE.json"))
    assert {n.split("/")[0] for n in names} == {"app", "config", "database", "requirements.txt", "static",
                                                 "wheels", "VERSION", "RELEASE.json"}
    assert "static/admin/index.html" in names and "app/images/placeholder.txt" not in names
    assert manifest["python_versions"] == [CONTROLLER]
    assert manifest["releaseignore"] == ["app/images/"]
    sha = (tmp_path / "out/tsh_erp-p1.tar.gz.sha256").read_text().split()
    assert sha[1] == "tsh_erp-p1.tar.gz" and len(sha[0]) == 64


def test_playbook_fails_on_an_app_host_without_an_answer(tmp_path):
    backend(tmp_path, ["tshcore==1.0"])
    inventory = app_inventory(tmp_path, {"app1": sys.executable, "app2": "/nonexistent/python3"})
    run_ = playbook(tmp_path, "-e", "app_src=src/tsh_backend", "-e", "build_dir=out", cwd=tmp_path, inventory=inventory)
    assert run_.returncode != 0
    assert "App host app2 did not answer when asked for its Python version" in " ".join(run_.stdout.split())
    assert not (tmp_path / "out").exists()


def test_playbook_without_inventory_or_list_names_both(tmp_path):
    backend(tmp_path, ["tshcore==1.0"])
    run_ = playbook(tmp_path, "-e", "app_src=src/tsh_backend", "-e", f"build_dir={tmp_path / 'out'}", cwd=tmp_path)
    out = " ".join(run_.stdout.split())
    assert run_.returncode != 0
    assert "No target Python: run the build with the inventory" in out and "build_python_versions" in out
    assert not (tmp_path / "out").exists()
