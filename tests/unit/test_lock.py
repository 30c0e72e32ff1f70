"""Unit tests for plugins/module_utils/tsh_lock.py: the deploy lock against real directories in
tmp_path (take, contend, release, break, a kill at each line), the verdict on the run holding a lock
(gone, alive, unknown, a reused pid), finding the ansible-playbook process, and the action plugin
through ansible-playbook on this machine (connection local)."""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import textwrap
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
_SPEC = importlib.util.spec_from_file_location("tsh_lock", REPO / "plugins/module_utils/tsh_lock.py")
tl = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(tl)

KEYS = {"holder", "version", "operation", "started", "started_epoch", "token"}
ME = {"host": "ctl", "boot_id": "boot-1", "pid_ns": "pid:[1]", "pid": 4242, "pid_start": 1000}


def params(token="t-me", **extra):
    out = {"state": "acquired", "path": "", "version": "v1", "operation": "deploy", "this_run": False,
           "confirm": "", "token": token, "holder": "ci@ctl", "break_id": "",
           "controller": {"host": "ctl", "boot_id": "boot-1", "pid": 4242, "pid_start": 1000}}
    out.update(extra)
    return out


def held_by(path, token="t-other", age=30, **rec):
    """A lock as a run writes it, `age` seconds old."""
    os.makedirs(path)
    record = {"holder": "ops@ctl", "version": "v7", "operation": "deploy", "started": "2026-12-02T10:00:00Z",
              "started_epoch": int(time.time()) - age, "token": token, "controller": "ctl",
              "controller_boot_id": "boot-1", "controller_pid": 777, "controller_pid_start": 555}
    record.update(rec)
    (pathlib.Path(path) / "holder.json").write_text(json.dumps(record))
    return record


def lock_path(tmp_path):
    return str(tmp_path / "deploy" / "lock")


def leftovers(tmp_path):
    return sorted(p.name for p in (tmp_path / "deploy").iterdir())


# Take, contend, release ------------------------------------------------------------------------
def test_acquire_takes_a_free_lock_with_the_whole_record(tmp_path):
    path = lock_path(tmp_path)
    result = tl.acquire(path, params(path=path))
    assert result["changed"] and result["acquired"]
    holder = pathlib.Path(path) / "holder.json"
    rec = json.loads(holder.read_text())
    assert KEYS <= set(rec) and rec["token"] == "t-me" and rec["version"] == "v1"
    assert (rec["controller"], rec["controller_pid"], rec["controller_pid_start"]) == ("ctl", 4242, 1000)
    assert oct(holder.stat().st_mode & 0o777) == "0o640"
    assert os.listdir(path) == ["holder.json"]  # no temporary file left


def test_acquire_again_by_the_same_run_changes_nothing(tmp_path):
    path = lock_path(tmp_path)
    tl.acquire(path, params(path=path))
    again = tl.acquire(path, params(path=path))
    assert again["acquired"] and not again["changed"]


def test_a_second_run_is_refused_and_the_lock_kept(tmp_path):
    path = lock_path(tmp_path)
    tl.acquire(path, params(path=path))
    other = tl.acquire(path, params("t-other", path=path))
    assert not other["acquired"] and not other["changed"]
    assert other["lock"]["state"] == "held" and other["lock"]["id"] == "t-me"
    assert json.loads((pathlib.Path(path) / "holder.json").read_text())["token"] == "t-me"


def test_release_with_a_wrong_token_leaves_the_lock(tmp_path):
    path = lock_path(tmp_path)
    tl.acquire(path, params(path=path))
    assert tl.release(path, "t-other") == {"changed": False, "released": False, "lock": tl.read(path)}
    assert os.path.exists(path)
    assert tl.release(path, "t-me")["released"]
    assert not os.path.exists(path) and leftovers(tmp_path) == []
    assert not tl.release(path, "t-me")["changed"]  # idempotent


def test_check_mode_changes_nothing(tmp_path):
    path = lock_path(tmp_path)
    assert tl.acquire(path, params(path=path), check_mode=True)["changed"]
    assert not os.path.exists(path)
    tl.acquire(path, params(path=path))
    assert tl.release(path, "t-me", check_mode=True)["changed"] and os.path.exists(path)


def test_the_module_refuses_without_its_action_plugin(tmp_path):
    path = lock_path(tmp_path)
    with pytest.raises(tl.LockError, match="needs its action plugin"):
        tl.run_module(params("", path=path))


# Break ---------------------------------------------------------------------------------------------
def test_break_needs_the_locks_id(tmp_path):
    path = lock_path(tmp_path)
    held_by(path, token="t-other")
    with pytest.raises(tl.LockError, match="is not the one named .*Nothing was broken"):
        tl.break_lock(path, "wrong")
    assert os.path.exists(path)
    assert tl.break_lock(path, "t-other")["broke"]["holder"]["version"] == "v7"
    assert not os.path.exists(path) and leftovers(tmp_path) == []


def test_acquire_breaks_only_the_lock_it_was_told_to(tmp_path):
    path = lock_path(tmp_path)
    held_by(path, token="t-newer")
    result = tl.acquire(path, params(path=path, break_id="t-gone"))
    assert not result["acquired"] and result["broke"] is None and result["lock"]["id"] == "t-newer"


# A kill at each line --------------------------------------------------------------------------------
def test_kill_after_mkdir_before_holder_is_being_taken_with_the_dirs_age(tmp_path):
    path = lock_path(tmp_path)
    os.makedirs(path)
    os.utime(path, (time.time() - 25, time.time() - 25))
    found = tl.read(path)
    assert found["state"] == "taking" and 24 <= found["age"] <= 27
    assert tl.judge(found, ME)[0] == "taking"
    assert "being taken" in tl.describe(found)
    # Refused while young ...
    refused = tl.Controller(lambda a: tl.run_module(dict(a, path=path)), ME).acquire(params(path=path))
    assert refused["failed"] and "Try again in a minute" in refused["msg"]
    # ... broken once older than the grace: the module writes holder.json right after mkdir.
    os.utime(path, (time.time() - 61, time.time() - 61))
    assert tl.judge(tl.read(path), ME)[0] == "gone"
    taken = tl.Controller(lambda a: tl.run_module(dict(a, path=path)), ME).acquire(params(path=path))
    assert taken["acquired"] and "killed between taking the lock and writing its holder" in taken["msg"]


def test_kill_while_writing_the_holder_leaves_no_half_record(tmp_path, monkeypatch):
    path = lock_path(tmp_path)

    def die(*_args):
        raise KeyboardInterrupt

    monkeypatch.setattr(tl.os, "replace", die)
    with pytest.raises(KeyboardInterrupt):
        tl.acquire(path, params(path=path))
    monkeypatch.undo()
    assert tl.read(path)["state"] == "taking"  # the temporary file is not holder.json
    os.utime(path, (time.time() - 90, time.time() - 90))
    taken = tl.Controller(lambda a: tl.run_module(dict(a, path=path)), ME).acquire(params(path=path))
    assert taken["acquired"] and os.listdir(path) == ["holder.json"]


def test_kill_between_the_rename_and_the_delete_leaves_a_tombstone_the_next_call_sweeps(tmp_path, monkeypatch):
    path = lock_path(tmp_path)
    tl.acquire(path, params(path=path))

    def die(_path):
        raise KeyboardInterrupt

    monkeypatch.setattr(tl, "_remove", die)
    with pytest.raises(KeyboardInterrupt):
        tl.release(path, "t-me")
    monkeypatch.undo()
    assert tl.read(path)["state"] == "free"  # the lock was gone in one step
    assert len(leftovers(tmp_path)) == 1 and leftovers(tmp_path)[0].startswith(".lock.gone-")
    assert tl.acquire(path, params(path=path))["acquired"]
    assert leftovers(tmp_path) == ["lock"]


def test_a_torn_holder_is_unknown_and_named(tmp_path):
    path = lock_path(tmp_path)
    os.makedirs(path)
    (pathlib.Path(path) / "holder.json").write_text('{"holder": "ops')
    found = tl.read(path)
    assert found["state"] == "torn" and tl.judge(found, ME)[0] == "unknown"
    assert found["id"].startswith("dir-")


# The verdict on the run holding a lock -----------------------------------------------------------
def lock_of(**rec):
    base = {"holder": "ops@ctl", "version": "v7", "operation": "deploy", "started": "2026-12-02T10:00:00Z",
            "started_epoch": 0, "token": "t-other", "controller": "ctl", "controller_boot_id": "boot-1",
            "controller_pid": 777, "controller_pid_start": 555}
    base.update(rec)
    return {"state": "held", "path": "/l", "holder": base, "id": base["token"], "age": 95}


@pytest.mark.parametrize("rec, alive, verdict, words", [
    ({}, {}, "gone", "no longer runs on ctl"),                                  # killed: pid not there
    ({}, {777: 555}, "alive", "still runs on ctl"),                             # the run still goes
    ({}, {777: 9999}, "gone", "is now another process"),                        # pid reused by another process
    ({"controller": "laptop"}, {}, "unknown", "another controller (laptop)"),    # another controller
    ({"controller": "", "controller_pid": 0}, {}, "unknown", "names no controller process"),  # old-style lock
    ({"controller_boot_id": "boot-0"}, {777: 555}, "gone", "has restarted since"),
    ({"controller_pid_ns": "pid:[2]"}, {}, "unknown", "another pid namespace"),  # a container of the same name
    ({"controller_pid_ns": "pid:[1]"}, {}, "gone", "no longer runs on ctl"),
    ({"token": tl.run_token(ME)}, {}, "this_run", "this run"),
])
def test_judge(rec, alive, verdict, words):
    got, reason = tl.judge(lock_of(**rec), ME, start_of=alive.get)
    assert got == verdict and words in reason


def test_a_real_dead_pid_and_a_real_live_one():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    me = tl.controller_facts(pid=os.getpid())
    dead = lock_of(controller=me["host"], controller_boot_id=me["boot_id"], controller_pid=child.pid,
                   controller_pid_start=123)
    assert tl.judge(dead, me)[0] == "gone"
    parent = os.getppid()
    live = lock_of(controller=me["host"], controller_boot_id=me["boot_id"], controller_pid=parent,
                   controller_pid_start=tl.read_stat(parent)[2])
    assert tl.judge(live, me)[0] == "alive"
    reused = lock_of(controller=me["host"], controller_boot_id=me["boot_id"], controller_pid=parent,
                     controller_pid_start=tl.read_stat(parent)[2] + 1)
    assert tl.judge(reused, me)[0] == "gone"


# What the controller does with each verdict -----------------------------------------------------
def controller(path, alive=None, inventory="inventories/production"):
    return tl.Controller(lambda a: tl.run_module(dict(a, path=path)), ME, start_of=(alive or {}).get,
                         holder="ci@ctl", inventory=inventory, host="app1", target="web1")


def test_a_gone_runs_lock_is_broken_at_once_saying_so(tmp_path):
    path = lock_path(tmp_path)
    held_by(path, age=3)  # no TTL: three seconds old is enough
    result = controller(path).run(params(path=path, state="acquired"))
    assert result["acquired"] and result["changed"] and result["record"]["token"] == tl.run_token(ME)
    assert result["warnings"] == [result["msg"].replace(" This run holds the lock now.", "")]
    assert result["msg"].startswith(f"Broke the deploy lock {path} on web1, held by ops@ctl deploying v7 since "
                                    f"2026-12-02T10:00:00Z (3 s ago), controller ctl pid 777: that run is gone "
                                    f"(its process, ansible-playbook pid 777, no longer runs on ctl).")


@pytest.mark.parametrize("rec, alive, why", [
    ({}, {777: 555}, "Wait for that run to finish."),
    ({"controller": "laptop"}, {}, "This controller cannot tell whether that run still goes."),
])
def test_a_live_or_unknown_lock_is_refused_naming_unlock(tmp_path, rec, alive, why):
    path = lock_path(tmp_path)
    held_by(path, age=400, **rec)
    result = controller(path, alive).run(params(path=path, state="acquired"))
    host = rec.get("controller", "ctl")
    assert result["failed"] and not result["changed"]
    assert result["msg"].startswith(f"Deploy lock {path} is held by ops@ctl deploying v7 since 2026-12-02T10:00:00Z "
                                    f"(6 min ago), controller {host} pid 777: ")
    assert result["msg"].endswith(f"{why} If that run is gone, break the lock with: "
                                  f"ansible-playbook -i inventories/production playbooks/unlock.yml")
    assert tl.read(path)["id"] == "t-other"


def test_a_rollback_lock_reads_as_one(tmp_path):
    path = lock_path(tmp_path)
    held_by(path, operation="rollback", version="rollback", controller="laptop")
    assert "held by ops@ctl rolling back since" in controller(path).run(params(path=path, state="inspected"))["report"]


def test_a_later_app_host_stops_when_the_lock_is_no_longer_this_runs(tmp_path):
    path = lock_path(tmp_path)
    ctl = controller(path)
    ctl.run(params(path=path, state="acquired"))
    assert not ctl.run(params(path=path, state="inspected", this_run=True)).get("failed")
    tl.bury(path)
    held_by(path)
    result = ctl.run(params(path=path, state="inspected", this_run=True))
    assert result["failed"] and result["msg"].startswith(f"The deploy lock {path} on web1 is no longer held by this run")
    assert "Stopping before app1 changes." in result["msg"]


def test_release_of_a_lock_that_is_not_this_runs_warns_and_leaves_it(tmp_path):
    path = lock_path(tmp_path)
    held_by(path)
    result = controller(path).run(params(path=path, state="released"))
    assert not result["changed"] and "left as it is" in result["warnings"][0] and os.path.exists(path)
    tl.bury(path)
    assert "already gone" in controller(path).run(params(path=path, state="released"))["msg"]


# unlock.yml's step ------------------------------------------------------------------------------------
def test_unlock_wrong_token_leaves_it_right_token_breaks_it(tmp_path):
    path = lock_path(tmp_path)
    held_by(path, controller="laptop")
    ctl = controller(path)
    report = ctl.run(params(path=path, state="inspected"))["report"]
    assert "Token: t-other." in report and report.endswith("-e unlock_confirm=t-other")
    for given in ("", "t-wrong"):
        refused = ctl.run(params(path=path, state="broken", confirm=given))
        assert refused["failed"] and "the deploy lock was left as it is" in refused["msg"] and os.path.exists(path)
    broke = ctl.run(params(path=path, state="broken", confirm="t-other"))
    assert broke["changed"] and broke["msg"].startswith(f"Broke the deploy lock {path} on web1, held by ops@ctl")
    assert not os.path.exists(path)
    assert ctl.run(params(path=path, state="broken"))["msg"] == f"No deploy lock on web1 ({path})."


def test_unlock_breaks_a_gone_runs_lock_without_a_token(tmp_path):
    path = lock_path(tmp_path)
    held_by(path)
    result = controller(path).run(params(path=path, state="broken"))
    assert result["changed"] and "no longer runs on ctl" in result["msg"] and not os.path.exists(path)


def test_unlock_refuses_a_live_runs_lock_without_its_token(tmp_path):
    path = lock_path(tmp_path)
    held_by(path)
    result = controller(path, {777: 555}).run(params(path=path, state="broken"))
    assert result["failed"] and "No token was given" in result["msg"] and os.path.exists(path)
    assert "That run still goes" in result["msg"]


# Which process is the run ------------------------------------------------------------------------
def fake_proc(tmp_path, tree):
    """A /proc with processes {pid: (ppid, argv, name)}."""
    root = tmp_path / "proc"
    for pid, (ppid, argv, name) in tree.items():
        d = root / str(pid)
        d.mkdir(parents=True)
        (d / "stat").write_text(f"{pid} ({name}) S {ppid} 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 {pid * 10} 0 0\n")
        (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    return str(root)


def test_playbook_pid_walks_up_to_the_ansible_playbook_process(tmp_path):
    proc = fake_proc(tmp_path, {
        10: (1, ["/bin/bash"], "bash"),
        20: (10, ["/venv/bin/python3", "/venv/bin/ansible-playbook", "-i", "inv", "deploy.yml"], "ansible-playboo"),
        30: (20, ["/venv/bin/python3", "/venv/bin/ansible-playbook", "-i", "inv", "deploy.yml"], "ansible-playboo"),
        40: (30, ["/venv/bin/python3", "/venv/bin/ansible-playbook"], "a (weird) name"),  # the worker
    })
    # The worker's own command line is ansible-playbook's too (a fork): the run is its parent chain's first.
    assert tl.playbook_pid(40, proc) == 30
    assert tl.read_stat(40, proc) == ("S", 30, 400)


def test_playbook_pid_without_ansible_playbook_is_the_workers_parent(tmp_path):
    proc = fake_proc(tmp_path, {10: (1, ["/bin/bash"], "bash"), 20: (10, ["python3", "runner.py"], "python3"),
                                30: (20, ["python3", "runner.py"], "python3")})
    assert tl.playbook_pid(30, proc) == 20


def test_playbook_pid_finds_a_real_ansible_playbook_process(tmp_path):
    """A script named ansible-playbook starts a child that forks a worker, like Ansible; the worker
    finds the script's process."""
    script = tmp_path / "ansible-playbook"
    script.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import importlib.util, os, subprocess, sys
        spec = importlib.util.spec_from_file_location("tl", {str(REPO / "plugins/module_utils/tsh_lock.py")!r})
        tl = importlib.util.module_from_spec(spec); spec.loader.exec_module(tl)
        pid = os.fork()
        if pid == 0:
            print(tl.controller_facts()["pid"], os.getppid(), flush=True)
            os._exit(0)
        os.waitpid(pid, 0)
        """))
    script.chmod(0o755)
    proc = subprocess.run([str(script)], capture_output=True, text=True, check=True)
    found, parent = proc.stdout.split()
    assert found == parent


# The action plugin through ansible-playbook ---------------------------------------------------------
PLAY = """\
- name: Take the lock
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Take the deploy lock
      tsh_deploy_lock:
        state: acquired
        path: "{{ lock }}"
        version: "{{ version }}"
"""


def playbook(tmp_path, version):
    (tmp_path / "play.yml").write_text(PLAY)
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
               ANSIBLE_LIBRARY=str(REPO / "plugins/modules"), ANSIBLE_MODULE_UTILS=str(REPO / "plugins/module_utils"),
               ANSIBLE_ACTION_PLUGINS=str(REPO / "plugins/action"))
    cmd = [str(pathlib.Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
           str(tmp_path / "play.yml"), "-e", f"lock={lock_path(tmp_path)}", "-e", f"version={version}",
           "-e", f"ansible_python_interpreter={sys.executable}"]
    run = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path)
    out, _ = run.communicate(timeout=120)
    return run.pid, run.returncode, " ".join(out.split())


def test_the_action_plugin_records_the_ansible_playbook_process_and_breaks_its_lock_once_it_is_gone(tmp_path):
    pid, rc, out = playbook(tmp_path, "v1")
    assert rc == 0, out
    rec = json.loads((tmp_path / "deploy/lock/holder.json").read_text())
    assert rec["controller_pid"] == pid and rec["controller"] == os.uname().nodename
    assert rec["controller_pid_start"] > 0 and rec["version"] == "v1"
    assert rec["controller_pid_ns"] == os.readlink("/proc/self/ns/pid")
    # That run has ended without releasing: the next run breaks its lock at once and says so.
    pid2, rc, out = playbook(tmp_path, "v2")
    assert rc == 0, out
    assert f"that run is gone (its process, ansible-playbook pid {pid}, no longer runs on" in out
    assert json.loads((tmp_path / "deploy/lock/holder.json").read_text())["controller_pid"] == pid2


def unlock(tmp_path, *args):
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(f"[web]\nlocalhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    run = subprocess.run([str(pathlib.Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory),
                          str(REPO / "playbooks/unlock.yml"), "-e", f"deploy_lock_dir={lock_path(tmp_path)}",
                          "-e", "ansible_become=false", *args],
                         capture_output=True, text=True, env=env, cwd=REPO, check=False, stdin=subprocess.DEVNULL)
    return run.returncode, " ".join((run.stdout + run.stderr).split())


def test_unlock_playbook(tmp_path):
    path = lock_path(tmp_path)
    rc, out = unlock(tmp_path)
    assert rc == 0 and f"No deploy lock on localhost ({path})." in out, out
    held_by(path, controller="laptop", token="t-laptop")
    rc, out = unlock(tmp_path)  # no terminal: the prompt gets nothing
    assert rc != 0 and "No token was given: the deploy lock was left as it is." in out, out
    assert "-e unlock_confirm=t-laptop" in out and os.path.exists(path)
    rc, out = unlock(tmp_path, "-e", "unlock_confirm=t-wrong")
    assert rc != 0 and "The token given (t-wrong) is not this lock's" in out and os.path.exists(path), out
    rc, out = unlock(tmp_path, "-e", "unlock_confirm=t-laptop")
    assert rc == 0 and f"Broke the deploy lock {path} on localhost, held by ops@ctl deploying v7" in out, out
    assert not os.path.exists(path)
    held_by(path, controller=os.uname().nodename, controller_pid=2 ** 22 + 1, controller_boot_id=tl.boot_id())
    rc, out = unlock(tmp_path)  # a run of this controller that has ended: broken without asking
    assert rc == 0 and "That run is gone" in out and "no longer runs on" in out and not os.path.exists(path), out
