"""Health gate logic shared by the tsh_health_gate module and its unit tests.

Three questions, each answered without trusting the application:
- contract: does one HTTP answer meet the inventory's health contract (status codes, JSON fields)?
- identity: is the process that holds the port the one this deploy started from the new release
  (a descendant of the unit's main process, running in the release directory, started after the
  deploy's restart)? A leftover process on the idle port or a cached answer can never pass.
- time: every request and pause fits in one wall-time budget, whatever the application does
  (never healthy, slow answers, connections that accept and hang).

Standard library only: this file is shipped to the host with the module.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import time
import urllib.parse

_MISSING = object()


# ---------------------------------------------------------------------------------------------
# Contract
# ---------------------------------------------------------------------------------------------

def field(document, path):
    """The value at a dotted path ('database.status') of a decoded JSON document, or _MISSING."""
    value = document
    for part in str(path).split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        else:
            return _MISSING
    return value


def contract_problems(status, body, contract):
    """Why one answer does not meet the contract ([] when it does).

    contract: status_codes (list of int), expect ({dotted field: value}), expect_if_present
    (checked only when the field exists), version_field + version (the release id the answer must
    report; no version_field: not checked).
    """
    problems = []
    codes = contract.get("status_codes") or [200]
    if status not in codes:
        problems.append(f"HTTP {status} not in {codes}")
    expect = dict(contract.get("expect") or {})
    if contract.get("version_field"):
        expect[contract["version_field"]] = contract.get("version", "")
    if_present = contract.get("expect_if_present") or {}
    if not expect and not if_present:
        return problems
    try:
        document = json.loads(body)
    except (TypeError, ValueError):
        problems.append("the answer is not JSON")
        return problems
    for path, wanted in expect.items():
        got = field(document, path)
        if got is _MISSING:
            problems.append(f"{path} missing (wanted {wanted!r})")
        elif str(got) != str(wanted):
            problems.append(f"{path} is {got!r} (wanted {wanted!r})")
    for path, wanted in if_present.items():
        got = field(document, path)
        if got is not _MISSING and str(got) != str(wanted):
            problems.append(f"{path} is {got!r} (wanted {wanted!r})")
    return problems


def describe_contract(contract):
    """The contract in words, for error messages."""
    parts = ["HTTP " + "/".join(str(c) for c in contract.get("status_codes") or [200])]
    for path, wanted in (contract.get("expect") or {}).items():
        parts.append(f"{path} == {wanted}")
    if contract.get("version_field"):
        parts.append(f"{contract['version_field']} == {contract.get('version', '')}")
    for path, wanted in (contract.get("expect_if_present") or {}).items():
        parts.append(f"{path} == {wanted} if present")
    return ", ".join(parts)


# ---------------------------------------------------------------------------------------------
# One request inside a deadline
# ---------------------------------------------------------------------------------------------

class Answer:
    """One HTTP attempt: status (0 when none), body (text), error (why there is no answer)."""

    def __init__(self, status=0, body="", error=""):
        self.status = status
        self.body = body
        self.error = error

    def summary(self, limit=400):
        if self.error:
            return self.error
        body = " ".join(self.body.split())
        if len(body) > limit:
            body = body[:limit] + "..."
        return f"HTTP {self.status} {body}"


def fetch(url, headers, deadline, request_timeout, clock=time.monotonic):
    """GET url, giving up at the deadline (a monotonic time) or after request_timeout seconds,
    whichever comes first. The request runs in a worker thread that is abandoned (its socket shut)
    when the time is up, so a server that accepts and never answers, or trickles bytes, cannot
    stretch the wait; every socket operation inside also gets only the time left."""
    stop = min(deadline, clock() + request_timeout)
    budget = stop - clock()
    if budget <= 0:
        return Answer(error="no time left for a request")
    parts = urllib.parse.urlsplit(url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=max(stop - clock(), 0.01))
    result = {}

    def request():
        try:
            conn.request("GET", path, headers={"Cache-Control": "no-cache", "Connection": "close", **(headers or {})})
            response = conn.getresponse()
            chunks = []
            size = 0
            while size < 65536:
                chunk = response.read1(8192)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            result["answer"] = Answer(response.status, b"".join(chunks).decode("utf-8", "replace"))
        except (socket.timeout, TimeoutError):
            result["answer"] = Answer(error=f"no answer within {budget:.1f} s (timed out)")
        except (OSError, http.client.HTTPException) as exc:
            result["answer"] = Answer(error=f"no answer: {type(exc).__name__}: {exc}")

    worker = threading.Thread(target=request, daemon=True)
    worker.start()
    worker.join(max(stop - clock(), 0))
    if worker.is_alive():
        sock = conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        conn.close()
        return Answer(error=f"no complete answer within {budget:.1f} s (timed out)")
    conn.close()
    return result.get("answer") or Answer(error="no answer")


# ---------------------------------------------------------------------------------------------
# Identity: who holds the port
# ---------------------------------------------------------------------------------------------

def listening_inodes(port, proc="/proc"):
    """Socket inodes listening on TCP port (IPv4 and IPv6)."""
    inodes = set()
    for name in ("net/tcp", "net/tcp6"):
        try:
            with open(os.path.join(proc, name), encoding="ascii") as f:
                next(f, None)
                for line in f:
                    cols = line.split()
                    if len(cols) < 10 or cols[3] != "0A":  # 0A: LISTEN
                        continue
                    if int(cols[1].rsplit(":", 1)[1], 16) == int(port):
                        inodes.add(cols[9])
        except OSError:
            continue
    inodes.discard("0")
    return inodes


def _pids(proc):
    for name in os.listdir(proc):
        if name.isdigit():
            yield int(name)


def socket_holders(inodes, proc="/proc"):
    """(pids with an open file descriptor on any of the socket inodes, pids whose descriptors could
    not be read). Reading another user's /proc/<pid>/fd needs root with CAP_SYS_PTRACE."""
    wanted = {f"socket:[{inode}]" for inode in inodes}
    holders = set()
    denied = set()
    if not wanted:
        return holders, denied
    for pid in _pids(proc):
        fd_dir = os.path.join(proc, str(pid), "fd")
        try:
            names = os.listdir(fd_dir)
        except PermissionError:
            denied.add(pid)
            continue
        except OSError:
            continue
        for fd in names:
            try:
                if os.readlink(os.path.join(fd_dir, fd)) in wanted:
                    holders.add(pid)
                    break
            except OSError:
                continue
    return holders, denied


def _stat(pid, proc):
    """(ppid, start ticks since boot) from /proc/<pid>/stat, or None."""
    try:
        with open(os.path.join(proc, str(pid), "stat"), encoding="ascii", errors="replace") as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rfind(")") + 2:].split()
    # rest[0] is field 3 (state): ppid is field 4, starttime field 22.
    return int(rest[1]), int(rest[19])


def is_descendant(pid, ancestor, proc="/proc"):
    """Whether pid is ancestor or one of its descendants."""
    seen = set()
    while pid and pid not in seen:
        if pid == ancestor:
            return True
        seen.add(pid)
        stat = _stat(pid, proc)
        if stat is None:
            return False
        pid = stat[0]
    return False


def start_time(pid, proc="/proc"):
    """Wall-clock start of pid (epoch seconds; boot time has one-second resolution)."""
    stat = _stat(pid, proc)
    if stat is None:
        return None
    btime = _keyed_number(os.path.join(proc, "stat"), "btime ")
    if btime is None:
        return None
    return btime + stat[1] / os.sysconf("SC_CLK_TCK")


def command_line(pid, proc="/proc"):
    try:
        with open(os.path.join(proc, str(pid), "cmdline"), "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return "?"


def identity_problem(main_pid, port, release_dir="", not_before=None, proc="/proc"):
    """Why the process answering on port is not the one the deploy started ('' when it is).

    main_pid: the unit's MainPID (0 when it is not running); release_dir: the directory the main
    process must run in (its resolved working directory); not_before: epoch seconds the main
    process must have started at or after (the host's clock just before the restart).
    """
    inodes = listening_inodes(port, proc)
    if not inodes:
        return f"nothing listens on port {port}"
    holders, denied = socket_holders(inodes, proc)
    if not holders:
        if denied:
            return (f"cannot tell which process listens on port {port}: reading /proc/<pid>/fd of "
                    f"{len(denied)} processes was refused (the gate runs as root and needs CAP_SYS_PTRACE)")
        return f"nothing that can be named holds port {port}"
    if not main_pid:
        others = ", ".join(f"pid {p} ({command_line(p, proc)})" for p in sorted(holders))
        return f"the unit is not running; port {port} is held by {others}"
    strangers = sorted(p for p in holders if not is_descendant(p, main_pid, proc))
    if strangers:
        others = ", ".join(f"pid {p} ({command_line(p, proc)})" for p in strangers)
        return (f"port {port} is held by {others}, not by the unit's main process {main_pid} "
                "or its workers: stop that process")
    if release_dir:
        try:
            cwd = os.path.realpath(os.readlink(os.path.join(proc, str(main_pid), "cwd")))
        except OSError as exc:
            return f"cannot read the working directory of pid {main_pid}: {exc}"
        if cwd != os.path.realpath(release_dir):
            return f"pid {main_pid} runs in {cwd}, not in the new release {release_dir}"
    if not_before is not None:
        started = start_time(main_pid, proc)
        # /proc's boot time is whole seconds: allow that much.
        if started is None or started < float(not_before) - 1.0:
            return (f"pid {main_pid} started at {started}, before this deploy restarted the unit "
                    f"({not_before})")
    return ""


# ---------------------------------------------------------------------------------------------
# The gate
# ---------------------------------------------------------------------------------------------

def run_gate(url, contract, timeout, request_timeout=5.0, interval=1.0, headers=None,
             identity=None, clock=time.monotonic, sleep=time.sleep, fetcher=fetch):
    """Poll url until an answer meets the contract and (when identity is given) comes from the
    expected process, or until timeout seconds have passed. Returns a dict: passed, attempts,
    elapsed, status, last_answer, problems, identity_problem.

    identity: a callable taking the seconds left and returning '' when the port's holder is the
    expected process, else why. It is asked before each request and again after an answer that
    meets the contract, so a holder that changes mid-request cannot pass; an answer that fails the
    contract is not asked about again, so a slow identity check (systemctl under load) cannot
    stretch the gate past its deadline by more than one bounded call.
    """
    start = clock()
    deadline = start + float(timeout)
    attempts = 0
    last = Answer(error="no request made")
    answered = None  # the last attempt that got an HTTP answer
    problems = []
    who = ""
    while True:
        attempts += 1
        who = identity(max(deadline - clock(), 0.0)) if identity else ""
        last = fetcher(url, headers, deadline, request_timeout)
        if not last.error:
            answered = last
        problems = contract_problems(last.status, last.body, contract) if not last.error else [last.error]
        if identity and not problems and not who:
            who = identity(max(deadline - clock(), 0.0))
        if not problems and not who:
            return {"passed": True, "attempts": attempts, "elapsed": round(clock() - start, 2),
                    "status": last.status, "last_answer": last.summary(), "problems": [],
                    "identity_problem": ""}
        remaining = deadline - clock()
        if remaining <= 0:
            break
        sleep(min(float(interval), remaining))
        if deadline - clock() <= 0:
            break
    # A last attempt cut short by the deadline says less than the answer before it: keep both.
    summary = last.summary()
    if last.error and answered is not None:
        summary = f"{summary}; the answer before: {answered.summary()}"
    return {"passed": False, "attempts": attempts, "elapsed": round(clock() - start, 2),
            "status": last.status, "last_answer": summary, "problems": problems,
            "identity_problem": who}


# ---------------------------------------------------------------------------------------------
# Memory preflight: can the host hold a second copy of the serving colour?
# ---------------------------------------------------------------------------------------------

def _keyed_number(path, key):
    """The number after `key` on the line that starts with it in a /proc file (meminfo, status,
    smaps_rollup, stat), or None when the file or the line is missing."""
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def mem_available_kb(proc="/proc"):
    available = _keyed_number(os.path.join(proc, "meminfo"), "MemAvailable:")
    if available is None:
        raise ValueError("MemAvailable missing from meminfo")
    return available


def descendants(root, proc="/proc"):
    """root and every process below it."""
    children = {}
    for pid in _pids(proc):
        stat = _stat(pid, proc)
        if stat is not None:
            children.setdefault(stat[0], []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in found:
            continue
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def footprint_kb(pid, proc="/proc"):
    """Proportional set size of pid (shared pages split between the workers that share them),
    or its resident size where smaps_rollup cannot be read."""
    for name, key in (("smaps_rollup", "Pss:"), ("status", "VmRSS:")):
        size = _keyed_number(os.path.join(proc, str(pid), name), key)
        if size is not None:
            return size
    return 0


def memory_verdict(serving_kb, available_kb, margin_mb):
    """(fits, needed_kb): a second copy of serving_kb plus margin_mb must fit in available_kb."""
    needed = serving_kb + int(margin_mb) * 1024
    return available_kb >= needed, needed
