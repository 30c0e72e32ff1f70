"""Release build logic for plugins/modules/tsh_release_build.py (run on the controller).

Pure functions first (path resolution, file selection patterns, choosing the target Pythons, reading
pip's errors, wheel tags), then build(), which does the work: select and copy the backend's files,
download a wheelhouse for every target Python, write VERSION, FAULTS.json and RELEASE.json.
tests/unit/test_release_build*.py import this file by path; it needs no Ansible.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import email.parser
import fnmatch
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import tarfile
import tempfile
import threading
import time
import zipfile

try:
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.tags import compatible_tags, cpython_tags
    from packaging.utils import canonicalize_name, parse_wheel_filename
except ImportError:  # pragma: no cover - pip always carries a copy
    from pip._vendor.packaging.requirements import InvalidRequirement, Requirement
    from pip._vendor.packaging.tags import compatible_tags, cpython_tags
    from pip._vendor.packaging.utils import canonicalize_name, parse_wheel_filename

# The python3 of each supported distribution release (README, "Building a release").
PYTHON_BY_RELEASE = {"Debian 12": "3.11", "Debian 13": "3.13", "Ubuntu 22.04": "3.10", "Ubuntu 24.04": "3.12"}
DEFAULT_EXCLUDE = [".git", "__pycache__", "*.pyc", "/build/"]
IGNORE_FILE = ".releaseignore"
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
PYTHON_RE = re.compile(r"^3\.(\d+)$")
# The oldest target Python a release can name; lower minors are a version read as a number (3.10 -> 3.1).
MIN_MINOR = 8


# The options of plugins/modules/tsh_release_build.py; its action plugin validates with them too.
ARGUMENT_SPEC = {
    "src": {"type": "str", "default": ""},
    "repo": {"type": "str", "default": ""},
    "ref": {"type": "str", "default": ""},
    "base_dir": {"type": "path"},
    "subdir": {"type": "str", "default": ""},
    "include": {"type": "list", "elements": "str", "default": []},
    "exclude": {"type": "list", "elements": "str"},
    "ignore_file": {"type": "str", "default": ".releaseignore"},
    "always_include": {"type": "list", "elements": "str", "default": []},
    "requirements": {"type": "str", "default": "requirements.txt"},
    "python_versions": {"type": "list", "elements": "raw", "default": []},
    "host_python_versions": {"type": "dict", "default": {}},
    "platforms": {"type": "list", "elements": "str",
                  "default": ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]},
    "implementation": {"type": "str", "default": "cp"},
    "pip_python": {"type": "path"},
    "pip_options": {"type": "list", "elements": "str", "default": []},
    "version": {"type": "str", "default": ""},
    "faults": {"type": "dict", "default": {}},
    "dest": {"type": "path", "required": True},
    "artifact_dir": {"type": "path"},
}


def run_command(argv):
    """(rc, stdout, stderr) of argv. subprocess, not AnsibleModule.run_command: the wheel probes run
    in threads, and run_command's preexec_fn is not safe there."""
    proc = subprocess.run(argv, capture_output=True, text=True, errors="replace", check=False)
    return proc.returncode, proc.stdout, proc.stderr


class BuildError(Exception):
    """A build input or step that fails; the message is what the operator reads."""


# ---------------------------------------------------------------------------------------------
# Paths


def resolve_path(path, base_dir):
    """path made absolute: `~` expanded, a relative path taken from base_dir (the directory
    ansible-playbook runs in), never from the playbook's directory."""
    path = os.path.expanduser(str(path))
    if not os.path.isabs(path):
        if not base_dir:
            raise BuildError(f"'{path}' is relative and no base directory was given to resolve it from.")
        path = os.path.join(os.path.expanduser(str(base_dir)), path)
    return os.path.normpath(path)


def clean_subdir(subdir):
    """The backend root inside the source as a relative POSIX path ('' for the source itself)."""
    value = str(subdir or "").strip()
    parts = [p for p in value.split("/") if p not in ("", ".")]
    if value.startswith("/") or ".." in parts:
        raise BuildError(f"app_src_subdir '{subdir}' must be a relative directory inside the source (no '..').")
    return "/".join(parts)


# ---------------------------------------------------------------------------------------------
# File selection: build_include (paths/globs from the backend root), build_exclude and
# .releaseignore (gitignore-like globs).


def _split(pattern):
    return [p for p in pattern.split("/") if p not in ("", ".")]


def _match_parts(pattern, parts):
    """fnmatch component by component; a `**` component matches any number of components."""
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_match_parts(pattern[1:], parts[i:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], pattern[0]) and _match_parts(pattern[1:], parts[1:])


def _could_lead_to(pattern, parts):
    """Whether the directory `parts` can hold a path matching `pattern` (to skip walking the rest)."""
    if not parts or not pattern:
        return True
    if pattern[0] == "**":
        return True
    return fnmatch.fnmatchcase(parts[0], pattern[0]) and _could_lead_to(pattern[1:], parts[1:])


class ExcludePattern:
    """One exclude glob, gitignore-like: without a `/` it matches a name at any depth (`*.pyc`,
    `__pycache__`); with one it is anchored at the backend root (`docs/*.md`, `/build`); a
    trailing `/` matches directories only; `**` spans directories. Excluding a directory excludes
    everything below it."""

    def __init__(self, text, origin):
        self.text = text
        self.origin = origin
        value = text.strip()
        if value.startswith("!"):
            raise BuildError(f"{origin}: '{text}': negated patterns ('!') are not supported; narrow build_include instead.")
        self.dir_only = value.endswith("/")
        value = value.rstrip("/")
        self.anchored = "/" in value
        self.parts = _split(value)
        if not self.parts or ".." in self.parts:
            raise BuildError(f"{origin}: '{text}' is not a usable pattern (empty or with '..').")

    def matches(self, parts, is_dir):
        if self.dir_only and not is_dir:
            return False
        if self.anchored:
            return _match_parts(self.parts, list(parts))
        return len(self.parts) == 1 and fnmatch.fnmatchcase(parts[-1], self.parts[0])


class IncludePattern:
    """One build_include entry: a path or glob from the backend root; a directory brings everything
    below it."""

    def __init__(self, text, origin="build_include"):
        self.text = text
        value = str(text).strip()
        if value.startswith("./"):
            value = value[2:]
        self.parts = _split(value)
        if not self.parts or ".." in self.parts:
            raise BuildError(f"{origin}: '{text}' is not a path inside the backend root (empty or with '..').")
        self.matched = False

    def covers(self, parts):
        """Whether parts or one of its parent directories matches."""
        return any(_match_parts(self.parts, list(parts[:i])) for i in range(1, len(parts) + 1))


def parse_ignore_file(text, origin=IGNORE_FILE):
    """The patterns of a .releaseignore: one glob a line; blank lines and `#` comments skipped."""
    patterns = []
    for number, line in enumerate(text.splitlines(), start=1):
        value = line.strip()
        if not value or value.startswith("#"):
            continue
        patterns.append(ExcludePattern(value, f"{origin} line {number}"))
    return patterns


class Selector:
    """Decides which paths of the backend root ship. include empty: everything. always: paths
    shipped whenever present even when include names others (the requirements file, static/...).
    Excludes win over includes."""

    def __init__(self, include=(), exclude=(), ignore=(), always=()):
        self.include = [IncludePattern(p) for p in include or []]
        self.always = [IncludePattern(p, "always_include") for p in always or []]
        self.exclude = [ExcludePattern(p, "build_exclude") for p in exclude or []] + list(ignore)

    def excluded(self, parts, is_dir):
        for i in range(1, len(parts) + 1):
            prefix, prefix_is_dir = parts[:i], (i < len(parts) or is_dir)
            if any(p.matches(prefix, prefix_is_dir) for p in self.exclude):
                return True
        return False

    def included(self, parts):
        if not self.include:
            return True
        hit = False
        for pattern in self.include:
            if pattern.covers(parts):
                pattern.matched = True
                hit = True
        return hit or any(p.covers(parts) for p in self.always)

    def selects(self, parts, is_dir=False):
        parts = tuple(parts)
        return not self.excluded(parts, is_dir) and self.included(parts)

    def worth_walking(self, parts):
        """Whether a directory that is not selected itself may still hold selected paths."""
        parts = tuple(parts)
        if self.excluded(parts, True):
            return False
        if not self.include:
            return True
        return any(_could_lead_to(p.parts, list(parts)) for p in self.include + self.always)

    def unmatched(self):
        return [p.text for p in self.include if not p.matched]


def select_tree(root, selector):
    """Walk the directory root; return the selected entries as (relative path, kind), kind one of
    'dir', 'file', 'link', sorted. Excluded directories are not entered."""
    entries = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        base = () if rel == "." else tuple(rel.split(os.sep))
        keep = []
        for name in sorted(dirnames):
            parts = base + (name,)
            full = os.path.join(dirpath, name)
            if os.path.islink(full):
                if selector.selects(parts):
                    entries.append(("/".join(parts), "link"))
            elif selector.selects(parts, True):
                entries.append(("/".join(parts), "dir"))
                keep.append(name)
            elif selector.worth_walking(parts):
                keep.append(name)
        dirnames[:] = keep
        for name in sorted(filenames):
            parts = base + (name,)
            mode = os.lstat(os.path.join(dirpath, name)).st_mode
            kind = "link" if stat.S_ISLNK(mode) else "file" if stat.S_ISREG(mode) else None
            if kind and selector.selects(parts):
                entries.append(("/".join(parts), kind))
    return sorted(entries)


def copy_tree(root, entries, dest):
    """Copy the selected entries of root into dest (modes and times kept, links as links)."""
    for rel, kind in entries:
        src = os.path.join(root, *rel.split("/"))
        target = os.path.join(dest, *rel.split("/"))
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        if kind == "dir":
            os.makedirs(target, mode=0o755, exist_ok=True)
        elif kind == "link":
            os.symlink(os.readlink(src), target)
        else:
            shutil.copy2(src, target)


def _member_parts(name, subdir):
    parts = _split(name)
    if ".." in parts:
        raise BuildError(f"git archive holds an unsafe path: {name}")
    if subdir:
        prefix = _split(subdir)
        if parts[: len(prefix)] != prefix:
            return None
        parts = parts[len(prefix):]
    return tuple(parts) or None


def select_archive(stream, subdir, selector, dest=None):
    """Read a tar stream (git archive) and return the selected entries of subdir like select_tree;
    with dest, write them there (modes and times kept, links as links)."""
    entries = []
    with tarfile.open(fileobj=stream, mode="r|") as archive:
        for member in archive:
            parts = _member_parts(member.name, subdir)
            if parts is None:
                continue
            kind = "dir" if member.isdir() else "link" if member.issym() else "file" if member.isfile() else None
            if kind is None or not selector.selects(parts, kind == "dir"):
                continue
            rel = "/".join(parts)
            entries.append((rel, kind))
            if dest is None:
                continue
            target = os.path.join(dest, *parts)
            os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
            if kind == "dir":
                os.makedirs(target, mode=0o755, exist_ok=True)
            elif kind == "link":
                os.symlink(member.linkname, target)
            else:
                with archive.extractfile(member) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
                os.chmod(target, member.mode & 0o777)
                os.utime(target, (member.mtime, member.mtime))
    return sorted(entries)


# ---------------------------------------------------------------------------------------------
# Target Pythons


def _python_key(version):
    return tuple(int(x) for x in version.split("."))


# The CPythons probed for wheels of a requirement that has none for a target (nearest first).
PROBE_MINORS = range(MIN_MINOR, 15)


def probe_order(python):
    """Other CPython 3 versions, nearest to python first (older before newer at equal distance)."""
    minor = _python_key(python)[1]
    others = [m for m in PROBE_MINORS if m != minor]
    return [f"3.{m}" for m in sorted(others, key=lambda m: (abs(m - minor), m))]


def choose_python_versions(explicit=None, host_answers=None):
    """The CPython versions to download wheels for, sorted: the explicit list when given
    (build_python_versions), otherwise the unique versions the app hosts reported
    ({host: "3.11"}). A host without an answer, an answer that is not a version, or neither
    source fails with the ways out named."""
    explicit = list(explicit or [])
    if explicit:
        versions = []
        for item in explicit:
            if not isinstance(item, str):
                raise BuildError(
                    f"build_python_versions: {item!r} was read as a number; quote each version "
                    f"(-e '{{\"build_python_versions\": [\"3.10\"]}}'), or 3.10 becomes 3.1."
                )
            value = item.strip().strip("[]'\" ")
            match = PYTHON_RE.match(value)
            if not match or int(match.group(1)) < MIN_MINOR:
                raise BuildError(
                    f"build_python_versions: '{item}' is not a target CPython like \"3.11\" "
                    f"(3.{MIN_MINOR} or later, quoted so 3.10 stays 3.10)."
                )
            versions.append(value)
        return sorted(set(versions), key=_python_key)
    answers = dict(host_answers or {})
    if not answers:
        raise BuildError(
            "No target Python: run the build with the inventory of the hosts it is for "
            "(ansible-playbook -i inventories/production playbooks/build.yml ...; the app hosts' python3 "
            "decides), or name the versions: -e '{\"build_python_versions\": [\"3.10\"]}' "
            "(Debian 12: 3.11, Debian 13: 3.13, Ubuntu 22.04: 3.10, Ubuntu 24.04: 3.12)."
        )
    versions = []
    for host, answer in sorted(answers.items()):
        value = str(answer or "").strip()
        match = PYTHON_RE.match(value)
        if not match:
            said = f"answered '{value}'" if value else "did not answer"
            raise BuildError(
                f"App host {host} {said} when asked for its Python version (unreachable, failed "
                f"above, or left out by --limit?). Fix the host, or name the versions with "
                f"-e '{{\"build_python_versions\": [\"3.10\"]}}'."
            )
        versions.append(value)
    return sorted(set(versions), key=_python_key)


# ---------------------------------------------------------------------------------------------
# pip's failures, wheel tags and markers


_REQ_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*?)\s*$")


def split_requirement(text):
    """'numpy==2.0.2' -> ('numpy', '', '==2.0.2'); 'uvicorn[standard]>=0.30' -> ('uvicorn',
    '[standard]', '>=0.30'). Markers (after ';') are dropped."""
    text = text.split(";", 1)[0]
    match = _REQ_RE.match(text)
    if not match:
        return text.strip(), "", ""
    return match.group(1), match.group(2) or "", match.group(3).replace(" ", "")


def describe_requirement(name, spec):
    """'numpy 2.0.2' for an exact pin, 'numpy >=2' otherwise."""
    if spec.startswith("==") and "," not in spec and "*" not in spec:
        return f"{name} {spec[2:]}"
    return f"{name} {spec}".strip()


def describe_platforms(platforms):
    """'manylinux x86_64' for the manylinux tags of one architecture."""
    names = []
    for platform in platforms:
        match = re.match(r"^(manylinux|musllinux)(?:_\d+_\d+|1|2010|2014)?_(.+)$", platform)
        name = f"{match.group(1)} {match.group(2)}" if match else platform
        if name not in names:
            names.append(name)
    return ", ".join(names)


def parse_pip_failure(stderr):
    """What a failed `pip download` says: {'kind': 'no-match', 'requirement': ..., 'versions':
    [versions pip found usable], 'requires_python': {version: specifier}} when a requirement had
    no usable distribution, else {'kind': 'other'}."""
    result = {"kind": "other", "requirement": "", "versions": [], "requires_python": {}}
    for line in stderr.splitlines():
        line = line.strip()
        match = re.search(r"No matching distribution found for (\S.*)$", line)
        if match:
            result["kind"] = "no-match"
            result["requirement"] = match.group(1).strip()
        match = re.search(r"Could not find a version that satisfies the requirement .*\(from versions: (.*)\)\s*$", line)
        if match and match.group(1).strip() != "none":
            result["versions"] = [v.strip() for v in match.group(1).split(",") if v.strip()]
        match = re.search(r"Ignored the following versions that require a different python version: (.*)$", line)
        if match:
            for item in match.group(1).split(";"):
                found = re.match(r"\s*(\S+)\s+Requires-Python\s+(.*?)\s*$", item)
                if found:
                    result["requires_python"][found.group(1)] = found.group(2)
    return result


def excluded_by_requires_python(requirement, requires_python):
    """The Requires-Python of the pinned version when that is why pip found nothing, else None
    (a source build would not help then)."""
    _name, _extras, spec = split_requirement(requirement)
    pinned = spec[2:] if spec.startswith("==") and "," not in spec else None
    return (requires_python or {}).get(pinned) if pinned else None


def no_wheel_message(requirement, python, platforms, versions=(), requires_python=None):
    """The operator's message for a requirement pip found no usable wheel of."""
    name, _extras, spec = split_requirement(requirement)
    what = describe_requirement(name, spec)
    needs = excluded_by_requires_python(requirement, requires_python)
    if needs:
        return (
            f"{what} does not support CPython {python} (Requires-Python {needs}); "
            f"pick a version that supports {python} or target another Python."
        )
    message = (
        f"no wheel of {what} for CPython {python} on {describe_platforms(platforms)}; "
        f"pick a version with wheels for {python} or target another Python"
    )
    if versions:
        shown = list(versions)[-6:]
        more = "..., " if len(versions) > len(shown) else ""
        message += f" (versions with wheels for {python}: {more}{', '.join(shown)})"
    return message + "."


def is_pure_wheel(filename):
    """Whether a wheel file name is pure Python for every Python 3: py3-none-any or py2.py3-none-any."""
    match = re.match(r"^.+-([^-]+)-([^-]+)-([^-]+)\.whl$", os.path.basename(filename))
    return bool(match) and match.group(1) in ("py3", "py2.py3") and match.group(2) == "none" and match.group(3) == "any"


def marker_environment(python, platforms):
    """The marker environment of a Linux CPython `python` (for requirements with markers)."""
    machine = "x86_64"
    for platform in platforms:
        match = re.match(r"^(?:manylinux|musllinux)(?:_\d+_\d+|1|2010|2014)?_(.+)$", platform)
        if match:
            machine = match.group(1)
            break
    return {
        "implementation_name": "cpython",
        "implementation_version": python + ".0",
        "os_name": "posix",
        "platform_machine": machine,
        "platform_python_implementation": "CPython",
        "platform_release": "",
        "platform_system": "Linux",
        "platform_version": "",
        "python_full_version": python + ".0",
        "python_version": python,
        "sys_platform": "linux",
    }


def expand_platforms(platforms):
    """The platform tags pip accepts for --platform values: manylinux2014 also takes manylinux2010
    and manylinux1 wheels, manylinux2010 also manylinux1 (pip's _custom_manylinux_platforms)."""
    expanded = []
    for platform in platforms:
        prefix, _sep, arch = platform.partition("_")
        older = {"manylinux2014": ["manylinux2014", "manylinux2010", "manylinux1"],
                 "manylinux2010": ["manylinux2010", "manylinux1"]}.get(prefix)
        for tag in [f"{p}_{arch}" for p in older] if older else [platform]:
            if tag not in expanded:
                expanded.append(tag)
    return expanded


def _marker_true(marker, environment, extras):
    if marker is None:
        return True
    return any(marker.evaluate(dict(environment, extra=extra)) for extra in (set(extras) | {""}))


def read_requirements(path, seen=None):
    """The requirement lines of a requirements file (options skipped, `-r` files followed)."""
    seen = seen or set()
    path = os.path.abspath(path)
    if path in seen:
        return []
    seen.add(path)
    lines, pending = [], ""
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = pending + raw.rstrip("\n")
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            pending = ""
            line = re.sub(r"(^|\s)#.*$", "", line).strip()
            if not line:
                continue
            match = re.match(r"^(?:-r|--requirement)(?:\s+|=)(\S+)", line)
            if match:
                lines += read_requirements(os.path.join(os.path.dirname(path), match.group(1)), seen)
                continue
            if line.startswith("-"):
                continue
            lines.append(re.sub(r"\s--hash\S*", "", line).strip())
    return lines


def _wheel_requires(path):
    with zipfile.ZipFile(path) as wheel:
        name = next(n for n in wheel.namelist() if re.match(r"^[^/]+\.dist-info/METADATA$", n))
        metadata = email.parser.Parser().parsestr(wheel.read(name).decode("utf-8"))
    return metadata.get_all("Requires-Dist") or []


def missing_for_python(requirement_lines, wheels_dir, python, platforms):
    """Requirements the wheelhouse lacks for `python`: pip evaluates markers with the controller's
    Python, so `exceptiongroup; python_version < "3.11"` is left out of a 3.10 download made by
    3.11. Follows requirement_lines and each wheel's Requires-Dist with `python`'s markers and
    returns the requirement strings (markers dropped) with no wheel usable by `python`."""
    version = _python_key(python)
    platforms = expand_platforms(platforms)
    supported = set(cpython_tags(version, platforms=platforms)) | set(compatible_tags(version, platforms=platforms))
    wheels = {}
    for filename in sorted(os.listdir(wheels_dir)):
        if not filename.endswith(".whl"):
            continue
        name, wheel_version, _build, tags = parse_wheel_filename(filename)
        if tags & supported:
            best = wheels.get(name)
            if best is None or wheel_version > best[0]:
                wheels[name] = (wheel_version, os.path.join(wheels_dir, filename))
    environment = marker_environment(python, platforms)
    queue, visited, missing = [], {}, []
    for line in requirement_lines:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if _marker_true(req.marker, environment, ()):
            queue.append(req)
    while queue:
        req = queue.pop(0)
        name = canonicalize_name(req.name)
        extras = set(req.extras)
        if name in visited and extras <= visited[name]:
            continue
        visited[name] = visited.get(name, set()) | extras
        if name not in wheels:
            text = req.name + (f"[{','.join(sorted(req.extras))}]" if req.extras else "") + str(req.specifier)
            if text not in missing:
                missing.append(text)
            continue
        for line in _wheel_requires(wheels[name][1]):
            dep = Requirement(line)
            if _marker_true(dep.marker, environment, visited[name]):
                queue.append(dep)
    return missing


# ---------------------------------------------------------------------------------------------
# The build


def _tail(text, lines=8):
    kept = [line for line in text.strip().splitlines() if line.strip() and "is ignored: it is neither" not in line]
    return " | ".join(kept[-lines:])


class PipProgress:
    """Turns `pip download`'s stdout into a few progress lines for one target Python: a line when a
    wheel is being fetched, at most one every `every` seconds (the first always), and a closing line
    with the counts. pip says "Collecting <req>" then "Downloading <wheel> (<size>)" or "File was
    already downloaded <path>" for an index, "Processing <path>" for a local wheel (--find-links)."""

    COLLECTING = re.compile(r"^Collecting (\S+)")
    PROCESSING = re.compile(r"^Processing (\S+)")
    DOWNLOADING = re.compile(r"^\s*Downloading (\S+)(?: \(([^)]+)\))?")
    CACHED = re.compile(r"^\s*(?:File was already downloaded|Using cached) (\S+)")

    def __init__(self, python, say, every=5.0, clock=time.monotonic):
        self.python = python
        self.say = say
        self.every = every
        self.clock = clock
        self.started = clock()
        self.last_said = None
        self.requirements = self.downloaded = self.cached = self.local = 0
        self.say(f"wheels for CPython {python}: resolving the requirements")

    def _fetching(self, path, size=None):
        now = self.clock()
        if self.last_said is None or now - self.last_said >= self.every:
            self.last_said = now
            size = f" ({size})" if size else ""
            self.say(f"wheels for CPython {self.python}: {_count(self.requirements, 'requirement')} so far, "
                     f"fetching {os.path.basename(path)}{size}")

    def line(self, text):
        text = text.rstrip("\n")
        if self.COLLECTING.match(text):
            self.requirements += 1
        elif match := self.PROCESSING.match(text):
            self.requirements += 1
            self.local += 1
            self._fetching(match.group(1))
        elif match := self.DOWNLOADING.match(text):
            self.downloaded += 1
            self._fetching(match.group(1), match.group(2))
        elif self.CACHED.match(text):
            self.cached += 1

    def done(self, rc):
        verdict = "done" if rc == 0 else f"pip stopped (rc {rc})"
        self.say(f"wheels for CPython {self.python}: {verdict} after {self.clock() - self.started:.0f} s: "
                 f"{_count(self.requirements, 'requirement')} ({self.downloaded} downloaded, {self.cached} already "
                 f"there, {self.local} from local files)")


def _count(number, noun):
    return f"{number} {noun}{'' if number == 1 else 's'}"


def run_streaming(argv, on_line):
    """Run argv; hand each stdout line to on_line as it arrives. Returns (rc, stdout, stderr)."""
    out_lines = []
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          errors="replace", bufsize=1) as proc:
        err_chunks = []
        reader = threading.Thread(target=lambda: err_chunks.append(proc.stderr.read()), daemon=True)
        reader.start()
        for text in proc.stdout:
            out_lines.append(text)
            on_line(text)
        reader.join()
        rc = proc.wait()
    return rc, "".join(out_lines), "".join(err_chunks)


class Wheelhouse:
    """Downloads the wheels of a requirements file for each target Python into one directory,
    building pure-Python source distributions into wheels when a requirement has no wheel."""

    def __init__(self, run, pip_python, wheels_dir, work_dir, platforms, implementation="cp", pip_options=(),
                 progress=None, run_lines=None):
        self.run = run
        # progress(text) is told what the downloads are doing while they run; run_lines(argv, on_line)
        # -> (rc, stdout, stderr) is a run that hands each stdout line to on_line as it comes.
        self.progress = progress
        self.run_lines = run_lines or run_streaming
        self.pip = [pip_python, "-m", "pip"]
        self.wheels_dir = wheels_dir
        self.built_dir = os.path.join(work_dir, "built")
        self.work_dir = work_dir
        self.platforms = list(platforms)
        self.implementation = implementation
        self.pip_options = list(pip_options or [])
        self.built = []  # wheel file names built from source distributions
        self.added = {}  # python -> requirements added because of markers

    def _find_links(self):
        return ["--find-links", self.built_dir] if os.path.isdir(self.built_dir) else []

    def download_command(self, python, requirements_file, extra=()):
        # Not --quiet: pip's "Collecting"/"Downloading" lines feed the progress report (PipProgress).
        return (self.pip + ["download", "--disable-pip-version-check", "--progress-bar", "off",
                            "--only-binary=:all:", "--implementation", self.implementation, "--python-version", python]
                + [f"--platform={p}" for p in self.platforms]
                + ["--dest", self.wheels_dir, "--requirement", requirements_file] + list(extra)
                + self._find_links() + self.pip_options)

    def download(self, python, requirements_file):
        """All wheels for `python`, including requirements its markers add."""
        extra = []
        for _round in range(20):
            self._download(python, requirements_file, extra)
            missing = missing_for_python(read_requirements(requirements_file) + extra,
                                         self.wheels_dir, python, self.platforms)
            if not missing:
                if extra:
                    self.added[python] = extra
                return
            new = [m for m in missing if m not in extra]
            if not new:
                raise BuildError(
                    f"The wheelhouse for CPython {python} still lacks {', '.join(missing)} after downloading "
                    f"it explicitly; check the requirement's markers and versions."
                )
            extra += new
        raise BuildError(f"The requirements for CPython {python} did not settle after 20 rounds of markers.")

    def _download(self, python, requirements_file, extra):
        tried = set()
        for _attempt in range(50):
            command = self.download_command(python, requirements_file, extra)
            if self.progress:
                report = PipProgress(python, self.progress)
                rc, _out, err = self.run_lines(command, report.line)
                report.done(rc)
            else:
                rc, _out, err = self.run(command)
            if rc == 0:
                return
            failure = parse_pip_failure(err)
            if failure["kind"] != "no-match":
                raise BuildError(f"pip download for CPython {python} failed: {_tail(err)}")
            requirement = failure["requirement"]
            name = canonicalize_name(split_requirement(requirement)[0])
            message = no_wheel_message(requirement, python, self.platforms, failure["versions"], failure["requires_python"])
            if excluded_by_requires_python(requirement, failure["requires_python"]) or name in tried:
                # A source build cannot help, or the wheel built from source did not.
                raise BuildError(message)
            tried.add(name)
            self.build_from_source(requirement, name, python, message)
        raise BuildError(f"pip download for CPython {python} kept failing: {_tail(err)}")

    def wheel_for_other_python(self, requirement, python):
        """The first other CPython (nearest first) with a wheel of requirement on the platforms: a
        package that ships wheels per Python is compiled, so its source is not built here."""
        def has_wheel(other):
            rc, _out, _err = self.run(
                self.pip + ["install", "--dry-run", "--quiet", "--disable-pip-version-check", "--ignore-installed",
                            "--no-deps", "--only-binary=:all:", "--implementation", self.implementation,
                            "--python-version", other, "--target", os.path.join(self.work_dir, "never")]
                + [f"--platform={p}" for p in self.platforms] + [requirement]
                + self._find_links() + self.pip_options)
            return rc == 0

        order = probe_order(python)
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(order)) as pool:
            found = list(pool.map(has_wheel, order))
        return next((other for other, hit in zip(order, found) if hit), None)

    def build_from_source(self, requirement, name, python, message):
        """Build a requirement's source distribution into a wheel; keep it when it is pure Python."""
        req = requirement.split(";", 1)[0].strip()
        other = self.wheel_for_other_python(req, python)
        if other:
            raise BuildError(f"{message[:-1]}; it ships compiled wheels (one for CPython {other}), so its source is not built here.")
        out_dir = tempfile.mkdtemp(prefix="sdist-", dir=self.work_dir)
        rc, _out, err = self.run(self.pip + ["wheel", "--quiet", "--disable-pip-version-check", "--no-deps",
                                             "--no-binary", name, "--wheel-dir", out_dir, req]
                                 + self._find_links() + self.pip_options)
        if rc != 0:
            if "No matching distribution found" in err:
                raise BuildError(message)
            raise BuildError(f"{message[:-1]}; its source distribution did not build on the controller: {_tail(err, 4)}")
        built = [f for f in os.listdir(out_dir) if f.endswith(".whl")]
        if len(built) != 1:
            raise BuildError(f"{message[:-1]}; building its source distribution gave {built or 'no wheel'}.")
        if not is_pure_wheel(built[0]):
            what = describe_requirement(*split_requirement(requirement)[::2])
            raise BuildError(
                f"{what} needs a compiled wheel: there is none for CPython {python} on "
                f"{describe_platforms(self.platforms)} and its source builds {built[0]}, not a pure-Python "
                f"(py3-none-any) wheel. Pick a version with wheels for {python} or target another Python."
            )
        os.makedirs(self.built_dir, exist_ok=True)
        os.replace(os.path.join(out_dir, built[0]), os.path.join(self.built_dir, built[0]))
        shutil.rmtree(out_dir)
        self.built.append(built[0])


def decide_version(version, described, now):
    """The release id: the one given, else `git describe` of the ref, else the UTC build time."""
    value = str(version or "").strip() or str(described or "").strip() or now.strftime("%Y%m%dT%H%M%SZ")
    if not VERSION_RE.match(value):
        raise BuildError(f"Version id '{value}' must be letters, digits, '.', '_', '+' or '-' (at most 64).")
    return value


def sha256_files(root, skip=()):
    """{relative path: sha256} of every regular file below root."""
    sums = {}
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            if rel in skip or not stat.S_ISREG(os.lstat(path).st_mode):
                continue
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            sums[rel] = digest.hexdigest()
    return dict(sorted(sums.items()))


def _git(run, repo, *args):
    rc, out, err = run(["git", "-C", repo, *args])
    return rc, out, err


def _top_level(entries):
    return sorted({rel.split("/", 1)[0] for rel, _kind in entries})


def build(params, run, check_mode=False, now=None, progress=None):
    """Build the release described by params (the module's options) into params['dest'].
    run(argv) -> (rc, stdout, stderr), called from several threads at once. progress(text), when
    given, hears what the wheel downloads are doing while they run. Returns the module's result."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    base_dir = params.get("base_dir")
    src, repo, ref = params.get("src") or "", params.get("repo") or "", params.get("ref") or ""
    if bool(src) == bool(repo and ref) or (repo and not ref):
        raise BuildError("Give either -e app_src=<directory> or -e app_repo=<git repository> -e app_git_ref=<ref>.")
    subdir = clean_subdir(params.get("subdir"))
    requirements = params.get("requirements") or "requirements.txt"
    include = list(params.get("include") or [])
    exclude = list(DEFAULT_EXCLUDE if params.get("exclude") is None else params["exclude"])
    always = [requirements] + list(params.get("always_include") or [])
    ignore_name = params.get("ignore_file", IGNORE_FILE)
    pythons = choose_python_versions(params.get("python_versions"), params.get("host_python_versions"))
    platforms = list(params.get("platforms") or [])
    dest = params["dest"]
    artifact_dir = resolve_path(params["artifact_dir"], base_dir) if params.get("artifact_dir") else None

    described, commit = "", ""
    if src:
        source_root = resolve_path(src, base_dir)
        if not os.path.isdir(source_root):
            raise BuildError(f"app_src {source_root} is not a directory (a relative app_src is taken from {base_dir}).")
        root = os.path.join(source_root, *subdir.split("/")) if subdir else source_root
        if not os.path.isdir(root):
            raise BuildError(f"app_src_subdir '{subdir}' is not a directory in {source_root}.")
        ignore_path = os.path.join(root, ignore_name) if ignore_name else ""
        ignore_text = None
        if ignore_path and os.path.isfile(ignore_path):
            with open(ignore_path, encoding="utf-8") as f:
                ignore_text = f.read()
        source = source_root
    else:
        repo_path = resolve_path(repo, base_dir)
        if not os.path.isdir(repo_path):
            raise BuildError(f"app_repo {repo_path} is not a directory (a relative app_repo is taken from {base_dir}).")
        rc, out, err = _git(run, repo_path, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
        if rc != 0:
            raise BuildError(f"app_git_ref '{ref}' is not a commit, branch or tag in {repo_path}. {_tail(err, 2)}".strip())
        commit = out.strip()
        if subdir:
            rc, out, _err = _git(run, repo_path, "cat-file", "-t", f"{commit}:{subdir}")
            if rc != 0 or out.strip() != "tree":
                raise BuildError(f"app_src_subdir '{subdir}' is not a directory in {repo_path} at {ref}.")
        ignore_text = None
        if ignore_name:
            ignore_spec = f"{commit}:{subdir + '/' if subdir else ''}{ignore_name}"
            rc, out, _err = _git(run, repo_path, "cat-file", "-t", ignore_spec)
            if rc == 0 and out.strip() == "blob":
                rc, out, err = _git(run, repo_path, "show", ignore_spec)
                if rc != 0:
                    raise BuildError(f"Could not read {ignore_spec}: {_tail(err, 2)}")
                ignore_text = out
        if not params.get("version"):
            rc, out, err = _git(run, repo_path, "describe", "--tags", "--always", ref)
            if rc != 0:
                raise BuildError(f"git describe {ref} failed in {repo_path}: {_tail(err, 2)}")
            described = out.strip()
        source = f"{repo_path}@{ref}"
    version = decide_version(params.get("version"), described, now)

    ignore = parse_ignore_file(ignore_text, ignore_name) if ignore_text is not None else []
    # The ignore file is the build's, not the backend's: it does not ship.
    itself = [ExcludePattern("/" + ignore_name, "ignore_file")] if ignore_name else []
    selector = Selector(include, exclude, ignore + itself, always)

    def select(into=None):
        if src:
            entries = select_tree(root, selector)
            if into:
                copy_tree(root, entries, into)
            return entries
        archive = ["git", "-C", repo_path, "archive", "--format=tar", commit] + (["--", subdir] if subdir else [])
        with subprocess.Popen(archive, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
            entries = select_archive(proc.stdout, subdir, selector, into)
            err = proc.stderr.read().decode("utf-8", "replace")
        if proc.returncode != 0:
            raise BuildError(f"git archive {ref} failed in {repo_path}: {_tail(err, 2)}")
        return entries

    if not check_mode:
        if os.path.exists(dest) and os.listdir(dest):
            raise BuildError(f"The staging directory {dest} is not empty.")
        os.makedirs(dest, mode=0o755, exist_ok=True)
    entries = select(None if check_mode else dest)
    unmatched = selector.unmatched()
    if unmatched:
        where = root if src else f"{repo_path}@{ref}" + (f":{subdir}" if subdir else "")
        raise BuildError(f"build_include entries match nothing in {where}: {', '.join(unmatched)}.")
    if (requirements, "file") not in entries:
        raise BuildError(
            f"The source has no {requirements} at the backend root (build_requirements; app_src_subdir "
            f"'{subdir}'), or build_exclude/.releaseignore leaves it out."
        )
    files = [rel for rel, kind in entries if kind == "file"]
    result = {
        "changed": True,
        "version": version,
        "source": source,
        "python_versions": pythons,
        "files": len(files),
        "top_level": _top_level(entries),
        "include": include,
        "exclude": exclude,
        "releaseignore": [p.text for p in ignore],
        "dest": dest,
    }
    if artifact_dir:
        result["artifact_dir"] = artifact_dir
        result["artifact"] = os.path.join(artifact_dir, f"tsh_erp-{version}.tar.gz")
    if check_mode:
        return result

    work_dir = tempfile.mkdtemp(prefix="tsh-wheels-", dir=os.path.dirname(dest) or None)
    try:
        wheelhouse = Wheelhouse(run, params.get("pip_python"), os.path.join(dest, "wheels"), work_dir, platforms,
                                params.get("implementation") or "cp", params.get("pip_options"), progress)
        os.makedirs(wheelhouse.wheels_dir, mode=0o755, exist_ok=True)
        for python in pythons:
            wheelhouse.download(python, os.path.join(dest, requirements))
    finally:
        shutil.rmtree(work_dir)

    with open(os.path.join(dest, "VERSION"), "w", encoding="utf-8") as f:
        f.write(version + "\n")
    faults = params.get("faults") or {}
    if faults:
        with open(os.path.join(dest, "FAULTS.json"), "w", encoding="utf-8") as f:
            f.write(json.dumps(faults) + "\n")
    manifest = {
        "version": version,
        "built_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "python_versions": pythons,
        "platforms": platforms,
        "requirements": requirements,
        "source": source,
        "subdir": subdir,
        "include": include,
        "exclude": exclude,
        "releaseignore": [p.text for p in ignore],
        "built_from_sdist": sorted(wheelhouse.built),
        "added_for_markers": wheelhouse.added,
        "files": sha256_files(dest, skip={"RELEASE.json"}),
    }
    if commit:
        manifest["commit"] = commit
    tmp = os.path.join(dest, ".RELEASE.json.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(manifest, indent=4, sort_keys=True) + "\n")
    os.replace(tmp, os.path.join(dest, "RELEASE.json"))
    if artifact_dir:
        os.makedirs(artifact_dir, mode=0o755, exist_ok=True)
    result.update(
        wheels=sorted(f for f in os.listdir(wheelhouse.wheels_dir) if f.endswith(".whl")),
        built_from_sdist=sorted(wheelhouse.built),
        added_for_markers=wheelhouse.added,
        source_bytes=sum(os.path.getsize(os.path.join(dest, *rel.split("/"))) for rel in files),
    )
    return result
