"""The deploy lock: one deploy, rollback or restore at a time per web host, and a lock left by a killed
run told apart from one whose run still goes.

Used by plugins/modules/tsh_deploy_lock.py on the web host (take, read, release, break: run_module)
and by plugins/action/tsh_deploy_lock.py on the controller (who this run is: controller_facts; whether
the run holding a lock is gone: judge; the whole decision: Controller).

The lock is a directory (deploy_lock_dir, /opt/tsh_erp/deploy/lock): mkdir is atomic, so of two runs
only one creates it. Its holder.json says who holds it (holder, version, operation, started,
started_epoch, token) and which run: the controller's host name, boot id and pid namespace, the
ansible-playbook process's pid and that process's start time (field 22 of /proc/<pid>/stat, so a pid reused by another
process is not mistaken for the run). holder.json is written to a temporary file in the lock directory
and renamed into place, so it is whole or absent. A lock is removed by renaming the directory to a
hidden tombstone beside it (.lock.gone-<random>), which is then deleted: a kill at any line leaves a
lock that is whole, a lock directory without holder.json, or a tombstone the next call deletes.

A lock directory without holder.json is being taken: the module writes holder.json right after mkdir
in the same process, so one older than TAKING_GRACE seconds (its age is the directory's mtime) was
left by a run killed in between, and is broken like the lock of a run that is provably gone.

The run's token is derived from the controller facts, so every task of one ansible-playbook run
computes the same token without passing it around, and no other run has it.

Needs no Ansible: tests/unit/test_lock.py imports it by path.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import secrets
import shutil
import socket
import time

HOLDER = "holder.json"
TAKING_GRACE = 60
PROC = "/proc"
PLAYBOOK = "ansible-playbook"
UNLOCK = "playbooks/unlock.yml"
VERBS = {"deploy": "deploying", "rollback": "rolling back", "restore": "restoring"}

ARGUMENT_SPEC = {
    "state": {"type": "str", "choices": ["acquired", "inspected", "released", "broken"], "default": "inspected"},
    "path": {"type": "path", "required": True},
    "version": {"type": "str", "default": ""},
    "operation": {"type": "str", "default": "deploy"},
    "this_run": {"type": "bool", "default": False},
    "confirm": {"type": "str", "default": "", "no_log": False},
    # Filled in by the action plugin on the controller.
    "token": {"type": "str", "default": "", "no_log": False},
    "holder": {"type": "str", "default": ""},
    "controller": {"type": "dict", "default": {}},
    "break_id": {"type": "str", "default": ""},
}


class LockError(Exception):
    """A lock step that cannot go on; the message says what was found and what to do."""


# ---------------------------------------------------------------------------------------------
# The controller: who this run is, and whether another run still goes


def read_stat(pid, proc=PROC):
    """(state, ppid, start time in clock ticks after boot) of a process, None when there is none."""
    try:
        with open(os.path.join(proc, str(pid), "stat"), encoding="utf-8", errors="replace") as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
        return None
    # The name (field 2) is in parentheses and may hold spaces and parentheses: split after the last.
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[1]), int(fields[19])


def read_cmdline(pid, proc=PROC):
    try:
        with open(os.path.join(proc, str(pid), "cmdline"), "rb") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
        return []
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def _is_playbook(argv):
    """Whether a command line is ansible-playbook's (its script, or Python running its script)."""
    return any(os.path.basename(arg) == PLAYBOOK for arg in argv[:2])


def playbook_pid(start, proc=PROC):
    """The pid of the ansible-playbook process above `start` (the action plugin's worker; Ansible forks
    its workers from the ansible-playbook process, so that is normally the worker's parent). Walks up
    the parent chain to the first process whose command line is ansible-playbook's; without one (the
    Python API, ansible-runner) it is `start`'s parent, the process that runs the whole play."""
    stat = read_stat(start, proc)
    parent = stat[1] if stat else os.getppid()
    pid, seen = parent, set()
    while pid > 1 and pid not in seen:
        seen.add(pid)
        if _is_playbook(read_cmdline(pid, proc)):
            return pid
        stat = read_stat(pid, proc)
        if stat is None:
            break
        pid = stat[1]
    return parent


def boot_id(proc=PROC):
    try:
        with open(os.path.join(proc, "sys/kernel/random/boot_id"), encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return ""


def pid_namespace(proc=PROC):
    """Which pid namespace the controller's processes live in (two containers with one host name have
    different ones, and cannot see each other's pids)."""
    try:
        return os.readlink(os.path.join(proc, "self/ns/pid"))
    except OSError:
        return ""


def controller_facts(proc=PROC, pid=None, hostname=None):
    """This run as the lock records it: controller host name, boot id, pid namespace, ansible-playbook
    pid and its start time (0 when /proc cannot say)."""
    pid = playbook_pid(os.getpid(), proc) if pid is None else pid
    stat = read_stat(pid, proc)
    return {"host": hostname or socket.gethostname(), "boot_id": boot_id(proc), "pid_ns": pid_namespace(proc),
            "pid": pid, "pid_start": stat[2] if stat else 0}


def run_token(me):
    """This run's token: the same in every task of one ansible-playbook run, different in any other."""
    text = "|".join(str(me.get(k, "")) for k in ("host", "boot_id", "pid_ns", "pid", "pid_start"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def default_holder(me, env=None):
    env = os.environ if env is None else env
    try:
        user = env.get("GITHUB_ACTOR") or getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{me['host']}"


def proc_start(pid, proc=PROC):
    """The start time of a live process on the controller, None when it is not running (or a zombie)."""
    stat = read_stat(pid, proc)
    if stat is None or stat[0] in ("Z", "X"):
        return None
    return stat[2]


def judge(lock, me, start_of=proc_start, grace=TAKING_GRACE):
    """Whether the run holding `lock` (a read() answer) still goes, seen from this controller (`me`):
    (verdict, reason). Verdicts: free, this_run, gone (provably: same controller and its process
    ended, or the controller booted since, or a lock left half taken), alive, taking (being taken right
    now), unknown (another controller, or a lock that names no controller process)."""
    state = lock["state"]
    if state == "free":
        return "free", "no lock"
    if state == "taking":
        if lock["age"] >= grace:
            return "gone", (f"the lock directory has had no {HOLDER} for {human_age(lock['age'])}: the run that made "
                            f"it was killed between taking the lock and writing its holder")
        return "taking", (f"another run is taking the lock right now (the directory is {human_age(lock['age'])} "
                          f"old and has no {HOLDER} yet)")
    if state == "torn":
        return "unknown", f"its {HOLDER} cannot be read ({lock['error']})"
    rec = lock["holder"]
    if lock["id"] and lock["id"] == run_token(me):
        return "this_run", "this run holds it"
    host, pid, start = rec.get("controller"), rec.get("controller_pid"), rec.get("controller_pid_start")
    if not host or not isinstance(pid, int) or pid <= 0:
        return "unknown", "the lock names no controller process (taken by hand or by an older tsh-infra)"
    if host != me["host"]:
        return "unknown", f"it was taken from another controller ({host}), whose processes this one ({me['host']}) cannot see"
    if rec.get("controller_pid_ns") and me.get("pid_ns") and rec["controller_pid_ns"] != me["pid_ns"]:
        return "unknown", (f"it was taken on {host} in another pid namespace ({rec['controller_pid_ns']}, another "
                           f"container?), whose processes this run cannot see")
    if rec.get("controller_boot_id") and me.get("boot_id") and rec["controller_boot_id"] != me["boot_id"]:
        return "gone", f"{host} has restarted since that run took the lock, so its process pid {pid} is gone"
    now = start_of(pid)
    if now is None:
        return "gone", f"its process, ansible-playbook pid {pid}, no longer runs on {host}"
    if start and now != start:
        return "gone", (f"its process, ansible-playbook pid {pid}, is gone: pid {pid} on {host} is now another "
                        f"process (started at tick {now}, not {start})")
    if pid == me["pid"] and (not start or start == me["pid_start"]):
        return "this_run", "this run holds it"
    return "alive", f"its process, ansible-playbook pid {pid}, still runs on {host}"


# ---------------------------------------------------------------------------------------------
# The lock directory


def human_age(seconds):
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} days"


def _dir_id(st):
    return f"dir-{st.st_ino}-{int(st.st_mtime)}"


def read(path, now=time.time):
    """What the lock directory holds: {'state': 'free'} | {'state': 'held', 'holder': record, 'id': token,
    'age'} | {'state': 'taking', 'id', 'age'} (no holder.json yet: its age is the directory's) |
    {'state': 'torn', 'id', 'age', 'error'} (holder.json is not a lock record). 'id' is what breaking
    the lock must name (the holder's token, or the directory's inode and mtime)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return {"state": "free", "path": path}
    dir_age = int(now() - st.st_mtime)
    try:
        with open(os.path.join(path, HOLDER), encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return {"state": "taking", "path": path, "id": _dir_id(st), "age": dir_age}
    except NotADirectoryError:
        return {"state": "torn", "path": path, "id": _dir_id(st), "age": dir_age, "error": f"{path} is not a directory"}
    try:
        rec = json.loads(text)
    except ValueError:
        rec = None
    if not isinstance(rec, dict) or not isinstance(rec.get("token"), str) or not rec["token"]:
        return {"state": "torn", "path": path, "id": _dir_id(st), "age": dir_age,
                "error": f"not a lock record: {text[:120]!r}"}
    epoch = rec.get("started_epoch")
    age = int(now() - epoch) if isinstance(epoch, (int, float)) else dir_age
    return {"state": "held", "path": path, "holder": rec, "id": rec["token"], "age": age}


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _tombstones(path):
    parent, prefix = os.path.dirname(path), "." + os.path.basename(path) + ".gone-"
    try:
        names = os.listdir(parent)
    except FileNotFoundError:
        return []
    return [os.path.join(parent, n) for n in names if n.startswith(prefix)]


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def sweep(path):
    """Delete the tombstones of locks removed before (a kill may have left one half deleted)."""
    for tomb in _tombstones(path):
        _remove(tomb)


def bury(path):
    """Remove the lock in one step (rename to a tombstone), then delete the tombstone. False when there
    was no lock any more."""
    tomb = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".gone-" + secrets.token_hex(4))
    try:
        os.rename(path, tomb)
    except FileNotFoundError:
        return False
    _fsync_dir(os.path.dirname(path))
    _remove(tomb)
    return True


def write_holder(path, rec):
    tmp = os.path.join(path, "." + HOLDER + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(rec, f, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(path, HOLDER))
    _fsync_dir(path)


def record(params, now=time.time):
    """holder.json for this run (the keys the lock always had, then the controller's)."""
    ctl, stamp = params["controller"] or {}, now()
    return {
        "holder": params["holder"],
        "version": params["version"],
        "operation": params["operation"],
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp)),
        "started_epoch": int(stamp),
        "token": params["token"],
        "controller": ctl.get("host", ""),
        "controller_boot_id": ctl.get("boot_id", ""),
        "controller_pid_ns": ctl.get("pid_ns", ""),
        "controller_pid": int(ctl.get("pid") or 0),
        "controller_pid_start": int(ctl.get("pid_start") or 0),
    }


def acquire(path, params, check_mode=False, now=time.time):
    """Take the lock for params['token'] (breaking first the lock whose id is params['break_id'], if that
    is still the one there). Already this run's: unchanged. Held by another: not acquired, with the
    lock as found."""
    if not check_mode:
        sweep(path)
    broke = None
    if params["break_id"]:
        found = read(path, now)
        if found["state"] != "free" and found["id"] == params["break_id"]:
            broke = found
            if not check_mode:
                bury(path)
    if check_mode:
        found = read(path, now) if broke is None else {"state": "free"}
        mine = found["state"] == "held" and found["id"] == params["token"]
        free = found["state"] == "free"
        return {"changed": free and not mine, "acquired": free or mine, "lock": found, "broke": broke}
    os.makedirs(os.path.dirname(path), mode=0o750, exist_ok=True)
    try:
        os.mkdir(path, 0o750)
    except FileExistsError:
        found = read(path, now)
        mine = found["state"] == "held" and found["id"] == params["token"]
        return {"changed": broke is not None, "acquired": mine, "lock": found, "broke": broke}
    write_holder(path, record(params, now))
    return {"changed": True, "acquired": True, "lock": read(path, now), "broke": broke}


def release(path, token, check_mode=False, now=time.time):
    """Remove the lock only when this run (token) holds it; otherwise leave it and say what is there."""
    found = read(path, now)
    if found["state"] != "held" or found["id"] != token:
        return {"changed": False, "released": False, "lock": found}
    if not check_mode:
        bury(path)
        sweep(path)
    return {"changed": True, "released": True, "lock": found}


def break_lock(path, lock_id, check_mode=False, now=time.time):
    """Remove the lock whose id is lock_id; refuse, changing nothing, when the lock there is another."""
    found = read(path, now)
    if found["state"] == "free":
        return {"changed": False, "broke": None, "lock": found}
    if found["id"] != lock_id:
        raise LockError(f"The deploy lock {path} is not the one named ({lock_id!r}): it is {describe(found)} "
                        f"(id {found['id']}). Nothing was broken. Look at it again with {UNLOCK}.")
    if not check_mode:
        bury(path)
        sweep(path)
    return {"changed": True, "broke": found, "lock": {"state": "free", "path": path}}


def run_module(params, check_mode=False, now=time.time):
    """The module's one step on the web host."""
    state, path = params["state"], params["path"]
    if state in ("acquired", "released") and not params["token"]:
        raise LockError("tsh_deploy_lock needs its action plugin (plugins/action/tsh_deploy_lock.py) to say which "
                        "run this is: set action_plugins = ./plugins/action (ansible.cfg) or ANSIBLE_ACTION_PLUGINS.")
    if state == "acquired":
        return acquire(path, params, check_mode, now)
    if state == "released":
        return release(path, params["token"], check_mode, now)
    if state == "broken":
        if not params["break_id"]:
            raise LockError("state=broken needs the id of the lock to break (break_id).")
        return break_lock(path, params["break_id"], check_mode, now)
    return {"changed": False, "lock": read(path, now)}


# ---------------------------------------------------------------------------------------------
# Messages


def describe(lock):
    """The lock as one phrase: who holds it, for what, since when, from which run."""
    if lock["state"] == "free":
        return "free"
    if lock["state"] == "taking":
        return f"being taken (the directory was made {human_age(lock['age'])} ago and has no {HOLDER})"
    if lock["state"] == "torn":
        return f"held by an unreadable record ({lock['error']}; the directory is {human_age(lock['age'])} old)"
    rec = lock["holder"]
    operation = str(rec.get("operation") or "deploy")
    version = str(rec.get("version") or "")
    doing = VERBS.get(operation, operation)
    what = f"{doing} {version}" if version and version != operation else doing
    run = (f", controller {rec['controller']} pid {rec.get('controller_pid')}" if rec.get("controller")
           else ", no controller recorded")
    return (f"held by {rec.get('holder') or 'unknown'} {what} since {rec.get('started') or 'unknown'} "
            f"({human_age(lock['age'])} ago){run}")


def unlock_hint(inventory):
    return f"ansible-playbook -i {inventory or '<inventory>'} {UNLOCK}"


def refusal(lock, verdict, reason, inventory):
    head = f"Deploy lock {lock['path']} is {describe(lock)}"
    if verdict == "taking":
        return (f"{head}: {reason}. Try again in a minute; a lock still without holder after {TAKING_GRACE} s is "
                f"broken by the next deploy.")
    wait = "Wait for that run to finish" if verdict == "alive" else "This controller cannot tell whether that run still goes"
    return (f"{head}: {reason}. {wait}. If that run is gone, break the lock with: {unlock_hint(inventory)}")


def broke_message(lock, reason, target):
    return f"Broke the deploy lock {lock['path']} on {target}, {describe(lock)}: that run is gone ({reason})."


def report(lock, verdict, reason, host, inventory):
    """What unlock.yml shows."""
    if verdict == "free":
        return f"No deploy lock on {host} ({lock['path']})."
    head = f"Deploy lock {lock['path']} on {host} is {describe(lock)}. Token: {lock['id']}."
    if verdict == "gone":
        return f"{head} That run is gone: {reason}. unlock.yml breaks it without asking."
    if verdict == "this_run":
        return f"{head} This run holds it."
    if verdict == "alive":
        why = (f"That run still goes: {reason}. Breaking its lock lets another deploy start beside it; only when "
               f"you know it is stuck")
    elif verdict == "taking":
        why = f"{reason[0].upper()}{reason[1:]}. Only when you know no run is taking it"
    else:
        why = f"This controller cannot tell whether that run still goes: {reason}. If it is gone"
    return (f"{head} {why}, break it with: {unlock_hint(inventory)} -e unlock_confirm={lock['id']}")


# ---------------------------------------------------------------------------------------------
# The controller's side of each state


class Controller:
    """What the action plugin does for each state. call(args) runs the module on the web host and
    returns its result; start_of(pid) reads a controller process's start time (None: not running)."""

    def __init__(self, call, me, start_of=proc_start, holder=None, inventory="", host="", target=""):
        self.call, self.me, self.start_of = call, me, start_of
        self.token = run_token(me)
        self.holder = holder or default_holder(me)
        self.inventory, self.host, self.target = inventory, host, target

    def _module(self, args, **extra):
        out = dict(args, token=self.token, holder=self.holder, break_id="",
                   controller={k: self.me.get(k, "") for k in ("host", "boot_id", "pid_ns", "pid", "pid_start")})
        out.update(extra)
        return self.call(out)

    def run(self, args):
        state = args["state"]
        if state == "acquired":
            return self.acquire(args)
        if state == "released":
            return self.release(args)
        if state == "broken":
            return self.unlock(args)
        return self.inspect(args)

    def acquire(self, args, attempts=3):
        """Take the lock; break at once a lock whose run is provably gone; refuse any other."""
        break_id, reasons, broken = "", {}, []
        for _ in range(attempts):
            result = self._module(args, state="acquired", break_id=break_id)
            if result.get("failed"):
                return result
            if result.get("broke"):
                broken.append(broke_message(result["broke"], reasons[result["broke"]["id"]], self.target))
            if result.get("acquired"):
                result.update(changed=bool(result.get("changed")) or bool(broken), token=self.token,
                              record=result["lock"].get("holder", {}))
                if broken:
                    result["msg"] = " ".join(broken) + " This run holds the lock now."
                    result["warnings"] = list(result.get("warnings") or []) + broken
                return result
            lock = result["lock"]
            verdict, reason = judge(lock, self.me, self.start_of)
            if verdict != "gone":
                return {"failed": True, "changed": bool(broken), "lock": lock, "verdict": verdict, "reason": reason,
                        "msg": refusal(lock, verdict, reason, self.inventory)}
            break_id, reasons[lock["id"]] = lock["id"], reason
        return {"failed": True, "changed": bool(broken), "lock": result["lock"],
                "msg": f"Deploy lock {args['path']}: it changed hands {attempts} times while this run tried to take it. "
                       f"Look at it with {unlock_hint(self.inventory)}"}

    def release(self, args):
        """Remove the lock only when this run holds it; say so when it was not this run's any more."""
        result = self._module(args, state="released")
        if result.get("failed") or result.get("released"):
            return result
        lock = result["lock"]
        note = (f"The deploy lock {lock['path']} on {self.target} was already gone at the end of this run "
                f"(it was broken while the run went)." if lock["state"] == "free" else
                f"The deploy lock {lock['path']} on {self.target} is not this run's, so it was left as it is: it is "
                f"{describe(lock)}.")
        result["msg"] = note
        result["warnings"] = list(result.get("warnings") or []) + [note]
        return result

    def inspect(self, args):
        result = self._module(args, state="inspected")
        if result.get("failed"):
            return result
        lock = result["lock"]
        verdict, reason = judge(lock, self.me, self.start_of)
        result.update(verdict=verdict, reason=reason, id=lock.get("id", ""), token=self.token,
                      record=lock.get("holder", {}), report=report(lock, verdict, reason, self.target, self.inventory))
        if args.get("this_run") and verdict != "this_run":
            result.update(failed=True, msg=(
                f"The deploy lock {lock['path']} on {self.target} is no longer held by this run (it is "
                f"{describe(lock)}: it was broken or taken by another run). Stopping before {self.host} changes."))
        return result

    def unlock(self, args):
        """unlock.yml: break the lock when its run is provably gone, or when args['confirm'] names it."""
        seen = self.inspect(dict(args, this_run=False))
        if seen.get("failed"):
            return seen
        lock, verdict = seen["lock"], seen["verdict"]
        if verdict == "free":
            return dict(seen, changed=False, msg=seen["report"])
        confirm = (args.get("confirm") or "").strip()
        if verdict != "gone" and confirm != lock["id"]:
            given = f"The token given ({confirm}) is not this lock's" if confirm else "No token was given"
            return dict(seen, failed=True, changed=False, msg=(
                f"{given}: the deploy lock was left as it is. {seen['report']}"))
        result = self._module(args, state="broken", break_id=lock["id"])
        if result.get("failed"):
            return result
        why = seen["reason"] if verdict == "gone" else f"confirmed with its token; {seen['reason']}"
        result["msg"] = (f"Broke the deploy lock {lock['path']} on {self.target}, {describe(lock)} ({why})."
                         if result.get("broke") else f"No deploy lock on {self.target} any more ({lock['path']}).")
        return result


def inventory_hint(sources, cwd=None):
    """The -i argument of this run, relative to the working directory where it lies below it."""
    cwd = cwd or os.getcwd()
    parts = []
    for src in sources or []:
        src = str(src)
        rel = os.path.relpath(src, cwd) if os.path.isabs(src) else src
        parts.append(rel if not rel.startswith("..") else src)
    return " -i ".join(parts)

