"""A service's configuration as one set: directories, files, first-time links and stale entries are
changed together, tested as a whole (nginx -t), and put back exactly as they were when the test
fails. Used by plugins/modules/tsh_config_files.py; unit tests in tests/unit/test_config_files.py.
Standard library only."""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile


class ConfigError(Exception):
    """A refusal or a rejected configuration; the message says what was put back."""


def _mode(value, default=0o644):
    if value is None or value == "":
        return default
    return int(str(value), 8) if isinstance(value, str) else int(value)


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write(path, data, mode, uid, gid, check_file=None):
    """Write data to path through a temporary file in its directory and one rename; check_file(tmp),
    when given, sees the complete temporary file first and raises to keep path as it was."""
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.chown(tmp, uid, gid)
        if check_file is not None:
            check_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


class Change:
    """What one run changed, and how to put each change back."""

    def __init__(self):
        self.changed = []        # paths, in the order they changed
        self.diff = []           # {'before', 'after', 'before_header', 'after_header'}
        self._undo = []          # callables, run last first

    def record(self, path, undo, before=None, after=None):
        self.changed.append(path)
        self._undo.append(undo)
        if before is not None or after is not None:
            self.diff.append({"before_header": path, "after_header": path,
                              "before": before or "", "after": after or ""})

    def undo(self):
        for step in reversed(self._undo):
            step()
        self._undo.clear()


def _directory(change, item, check):
    path, mode = item["path"], _mode(item.get("mode"), 0o755)
    uid, gid = item.get("uid", 0), item.get("gid", 0)
    if not os.path.lexists(path):
        if not check:
            os.makedirs(path, mode)
            os.chmod(path, mode)
            os.chown(path, uid, gid)
        change.record(path, lambda: None)  # an empty new directory can stay: it breaks nothing
        return
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) and os.path.isdir(path):
        return  # a link to a directory (a static root a deploy pointed at a release) is left as it is
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{path} must be a directory but is something else: move it away, then run again")
    if stat.S_IMODE(info.st_mode) != mode or (info.st_uid, info.st_gid) != (uid, gid):
        if not check:
            os.chmod(path, mode)
            os.chown(path, uid, gid)
        change.record(path, lambda: None)


def _file_check(run, item):
    """The file's own test (validate: an argv string with %s for the file), or None."""
    if not item.get("validate"):
        return None
    argv = str(item["validate"]).split()
    if "%s" not in argv:
        raise ConfigError(f"validate of {item['dest']} must name the file as %s: {item['validate']}")

    def check_file(tmp):
        rc, out, err = run([tmp if word == "%s" else word for word in argv])
        if rc != 0:
            raise ConfigError(f"{item['dest']} was not written: `{item['validate']}` rejected it: "
                              f"{(err or out).strip()}")
    return check_file


def _edited(text, lines):
    """text (a file someone else owns, e.g. the distribution's login.defs) with each
    {'regexp', 'line', 'at'} set: the last line matching regexp becomes line; with no match line is
    appended, or put first with at: start (an sshd Include that must be read before the rest)."""
    rows = text.decode().splitlines()
    for edit in lines:
        pattern = re.compile(edit["regexp"])
        matches = [i for i, row in enumerate(rows) if pattern.search(row)]
        if matches:
            rows[matches[-1]] = edit["line"]
        elif edit.get("at") == "start":
            rows.insert(0, edit["line"])
        else:
            rows.append(edit["line"])
    return ("\n".join(rows) + "\n").encode()


def _file(change, item, uid, gid, check, run=None):
    path, lines = item["dest"], item.get("lines")
    uid, gid = item.get("uid", uid), item.get("gid", gid)  # a file's own owner over the call's
    if lines is None:
        mode = _mode(item.get("mode"))
        data = item["content"].encode() if isinstance(item["content"], str) else item["content"]
    elif not os.path.isfile(path):
        raise ConfigError(f"{path} is missing: the file to edit comes with its package; install that first")
    old = None
    if os.path.lexists(path):
        if os.path.islink(path) or not os.path.isfile(path):
            raise ConfigError(f"{path} must be a regular file but is a link or a directory: move it away, then run again")
        info = os.stat(path)
        with open(path, "rb") as handle:
            old = (handle.read(), stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid)
        if lines is not None:  # an edited file keeps its mode unless one is given
            data, mode = _edited(old[0], lines), _mode(item.get("mode"), old[1])
        if old == (data, mode, uid, gid):
            return
    if not check:
        _write(path, data, mode, uid, gid, _file_check(run, item))

    def undo():
        if old is None:
            os.unlink(path)
        else:
            _write(path, old[0], old[1], old[2], old[3])
    change.record(path, undo, before=old[0].decode(errors="replace") if old else "",
                  after=data.decode(errors="replace"))


def _link(change, item, check):
    path, src = item["path"], item["src"]
    if os.path.lexists(path):
        return  # only made when missing: once something (a deploy) points it elsewhere, it stays
    if not check:
        os.symlink(src, path)
    change.record(path, lambda: os.unlink(path), before="", after=f"-> {src}\n")


def _prune(change, item, written, aside, check):
    directory, keep = item["path"], set(item.get("keep") or [])
    if not os.path.isdir(directory):
        return
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if name in keep or path in written:
            continue
        if not check:
            os.makedirs(aside, 0o700, exist_ok=True)
            held = os.path.join(aside, name)
            os.rename(path, held)
        change.record(path, (lambda p=path, h=os.path.join(aside, name): os.rename(h, p)),
                      before=f"{path}\n", after="")


def _aside(directory):
    """Where prune holds the entries it removes from directory until the test passed: a hidden
    sibling, so the service never reads them."""
    directory = directory.rstrip("/")
    return os.path.join(os.path.dirname(directory), f".{os.path.basename(directory)}.pruned")


def _remove_empty(paths):
    """Remove the directories of paths that exist and are empty (everything held went back)."""
    for path in paths:
        if os.path.isdir(path) and not os.listdir(path):
            os.rmdir(path)


def apply(files, run=None, directories=(), links=(), prune=(), validate=(), service="the service",
          uid=0, gid=0, check=False):
    """Make directories, files and first-time links as given, remove what prune finds stale, then run
    validate (argv) on the whole result; when it fails, put every change back and raise.

    files: [{'dest', 'content', 'mode', 'validate', 'uid', 'gid'}] (validate: a test of that one file
    before it goes live, an argv string with %s for it, as bash -n %s; uid and gid, when given, over
    the call's), or instead of 'content' 'lines':
    [{'regexp', 'line', 'at'}], lines set in a file the distribution owns (see _edited);
    directories: [{'path', 'mode', 'uid', 'gid'}];
    links: [{'path', 'src'}] made only when missing; prune: [{'path': dir, 'keep': [names]}]: entries
    of dir that are neither kept nor written are removed (held aside until the test passed).
    run(argv) -> (rc, stdout, stderr). Returns {'changed', 'paths', 'diff'}.
    """
    dests = [item["dest"] for item in files]
    if len(set(dests)) != len(dests):
        raise ConfigError(f"the same file is given twice: {sorted({d for d in dests if dests.count(d) > 1})}")
    aside_dirs = {_aside(item["path"]) for item in prune}
    for aside in aside_dirs:  # what a killed run held aside was stale: it goes
        if os.path.isdir(aside) and not check:
            shutil.rmtree(aside)
    change = Change()
    try:
        for item in directories:
            _directory(change, item, check)
        for item in files:
            _file(change, item, uid, gid, check, run)
        for item in links:
            _link(change, item, check)
        written = set(dests) | {item["path"] for item in links}
        for item in prune:
            _prune(change, item, written, _aside(item["path"]), check)
    except BaseException:
        if not check:
            change.undo()
            _remove_empty(aside_dirs)
        raise
    if validate and not check:
        rc, out, err = run(list(validate))
        if rc != 0:
            change.undo()
            _remove_empty(aside_dirs)
            raise ConfigError(
                f"{service} rejected the new configuration, so it was not applied: the previous files are back "
                f"in place and the running {service} was not reloaded. {' '.join(validate)} said: "
                f"{(err or out).strip()}")
    if not check:
        for aside in aside_dirs:
            if os.path.isdir(aside):
                shutil.rmtree(aside)
    return {"changed": bool(change.changed), "paths": change.changed, "diff": change.diff}
