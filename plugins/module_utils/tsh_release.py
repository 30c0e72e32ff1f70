"""Put a checked release on an app host in one call (plugins/modules/tsh_release_install.py).

unpack()       the uploaded artifact into releases/<version>, through a directory renamed when it is
               complete and holds the expected RELEASE.json; a release already there under that id
               must be the same build.
link_shared()  the release's shared paths (uploads) to directories that outlive releases.
install()      stop the idle colour, unpack, link, build a fresh venv from the release's own
               wheelhouse (no package index), and only then repoint current-<colour> and
               venvs/<colour>, each with one atomic rename.

A kill at any instant leaves the serving colour untouched and the idle colour either on its old
release or on the new one, never half: every step writes beside its target and renames.
Unit tests: tests/unit/test_release_install.py and tests/unit/test_shared_paths.py.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import tarfile
import time

MANIFEST = "RELEASE.json"


class InstallError(Exception):
    """A refusal or failure, with the message to show the operator."""


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path):
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


# Shared paths ------------------------------------------------------------------------------------

def bad_paths(paths):
    """Paths that are not plain relative paths inside the release."""
    bad = []
    for path in paths:
        norm = os.path.normpath(path)
        if not path or os.path.isabs(path) or norm.startswith("..") or norm in (".", ""):
            bad.append(path)
    return bad


def _chown(path, uid, gid):
    if uid is not None or gid is not None:
        os.lchown(path, -1 if uid is None else uid, -1 if gid is None else gid)


def _seed(source, target, uid, gid):
    """Copy source's tree into target without overwriting; return the number of files copied."""
    copied = 0
    for root, dirs, files in os.walk(source):
        rel = os.path.relpath(root, source)
        dest_root = target if rel == "." else os.path.join(target, rel)
        for name in dirs:
            dest = os.path.join(dest_root, name)
            if not os.path.exists(dest):
                os.mkdir(dest)
                shutil.copymode(os.path.join(root, name), dest)
                _chown(dest, uid, gid)
        for name in files:
            dest = os.path.join(dest_root, name)
            if not os.path.lexists(dest):
                tmp = dest + ".tsh-seed"
                shutil.copy2(os.path.join(root, name), tmp)
                _chown(tmp, uid, gid)
                os.rename(tmp, dest)
                copied += 1
    return copied


def link_shared(release_dir, shared_dir, paths, uid=None, gid=None, mode=0o750, check=False):
    """Make <release_dir>/P a link to <shared_dir>/P for each path P; returns (linked, seeded).

    The first time a shared directory is made it is seeded with what the release ships at P
    (existing files are never overwritten); an already linked path is left alone. Each step is
    atomic (mkdir, rename), so a kill leaves no half seed and a re-run finishes the job."""
    linked = []
    seeded = 0
    for path in paths:
        norm = os.path.normpath(path)
        inside = os.path.join(release_dir, norm)
        shared = os.path.join(shared_dir, norm)
        if os.path.islink(inside) and os.readlink(inside) == shared:
            continue
        linked.append(norm)
        if check:
            continue
        if not os.path.isdir(shared):
            parent = os.path.dirname(shared)
            os.makedirs(parent, exist_ok=True)
            tmp = shared + ".tsh-new"
            if os.path.lexists(tmp):
                shutil.rmtree(tmp)
            os.mkdir(tmp)
            os.chmod(tmp, mode)
            _chown(tmp, uid, gid)
            if os.path.isdir(inside) and not os.path.islink(inside):
                seeded += _seed(inside, tmp, uid, gid)
            os.rename(tmp, shared)
        os.makedirs(os.path.dirname(inside), exist_ok=True)
        link_tmp = inside + ".tsh-link"
        if os.path.lexists(link_tmp):
            os.unlink(link_tmp)
        os.symlink(shared, link_tmp)
        if os.path.isdir(inside) and not os.path.islink(inside):
            shutil.rmtree(inside)
        os.replace(link_tmp, inside)
    return linked, seeded


# Unpacking ---------------------------------------------------------------------------------------

def _read_manifest(release_dir):
    path = os.path.join(release_dir, MANIFEST)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        raise InstallError(f"{path} cannot be read ({exc}); the artifact is not a TSH ERP release") from exc


def _check_members(tar, dest):
    """Refuse anything that would land outside dest or is not a file, directory or link."""
    root = os.path.realpath(dest)
    for member in tar.getmembers():
        target = os.path.realpath(os.path.join(root, member.name))
        if os.path.isabs(member.name) or not (target == root or target.startswith(root + os.sep)):
            raise InstallError(f"the artifact holds {member.name!r}, outside the release directory; refused")
        if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
            raise InstallError(f"the artifact holds {member.name!r}, which is not a file, directory or link; refused")
        if member.issym() or member.islnk():
            base = root if member.islnk() else os.path.dirname(target)
            linked = os.path.realpath(os.path.join(base, member.linkname))
            if os.path.isabs(member.linkname) or not (linked == root or linked.startswith(root + os.sep)):
                raise InstallError(f"the artifact's link {member.name!r} points outside the release ({member.linkname}); refused")


def unpack(artifact, release_dir, manifest, check=False):
    """Put the artifact's content at release_dir unless that release is there; return True when
    it unpacked. The content goes to a temporary directory first, is checked against manifest
    (the controller's RELEASE.json) and is renamed into place only when complete; the uploaded
    artifact is removed afterwards."""
    if os.path.exists(os.path.join(release_dir, MANIFEST)):
        if _read_manifest(release_dir) != manifest:
            raise InstallError(f"{release_dir} holds a different build than the artifact (RELEASE.json differs). "
                               "Build with a new version id.")
        return False
    if check:
        return True
    if not os.path.isfile(artifact):
        raise InstallError(f"no artifact at {artifact} to unpack (the upload did not happen)")
    parent, name = os.path.split(release_dir.rstrip("/"))
    tmp = os.path.join(parent, f".unpack-{name}")
    _remove(tmp)
    os.mkdir(tmp, 0o755)
    try:
        with tarfile.open(artifact, "r:gz") as tar:
            _check_members(tar, tmp)
            if hasattr(tarfile, "tar_filter"):
                tar.extractall(tmp, filter="tar")
            else:  # Python < 3.11.4: the members were checked above.
                tar.extractall(tmp)
    except (tarfile.TarError, OSError, EOFError) as exc:
        _remove(tmp)
        raise InstallError(f"cannot unpack {artifact}: {exc}") from exc
    if os.geteuid() == 0:
        for root, dirs, files in os.walk(tmp):
            for entry in dirs + files:
                os.lchown(os.path.join(root, entry), 0, 0)
        os.lchown(tmp, 0, 0)
    if _read_manifest(tmp) != manifest:
        _remove(tmp)
        raise InstallError(f"{artifact} on the host does not hold the release the controller read "
                           "(RELEASE.json differs); nothing was installed")
    os.chmod(tmp, 0o755)
    if os.path.lexists(release_dir):
        # A directory without RELEASE.json: what an older, killed unpack left.
        _remove(release_dir)
    os.rename(tmp, release_dir)
    _fsync_dir(parent)
    if os.path.lexists(artifact):
        os.unlink(artifact)
    return True


# The colour --------------------------------------------------------------------------------------

def swap_link(link, target):
    """Point link at target with one rename; return True when it changed."""
    if os.path.islink(link) and os.readlink(link) == target:
        return False
    tmp = os.path.join(os.path.dirname(link), f".{os.path.basename(link)}.new")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, link)
    _fsync_dir(os.path.dirname(link))
    return True


def link_static(release_dir, sites, check=False):
    """Point each static site's path at the frontend release_dir ships for it (static/<name>).

    sites maps a name to the path nginx serves. Sites the release does not ship are left alone.
    Each path becomes a symlink swapped by one rename; a plain directory left by provisioning is
    moved aside to <path>.provisioned the first time. Returns the names whose link changed.
    """
    changed = []
    for name, path in sorted(sites.items()):
        target = os.path.join(release_dir, "static", name)
        if not os.path.isdir(target):
            continue
        if os.path.islink(path) and os.readlink(path) == target:
            continue
        changed.append(name)
        if check:
            continue
        if os.path.isdir(path) and not os.path.islink(path):
            aside = f"{path}.provisioned"
            if os.path.lexists(aside):
                raise InstallError(f"{path} is a directory and {aside} exists already: move one of them "
                                   f"away by hand so the release's frontend can be linked at {path}")
            os.rename(path, aside)
        swap_link(path, target)
    return changed


def static_conflict(release_dir, sites):
    """Why link_static would refuse (a provisioned directory with its .provisioned already aside), ''
    when it would not: asked before traffic moves, so a refusal changes nothing."""
    for name, path in sorted(sites.items()):
        if not os.path.isdir(os.path.join(release_dir, "static", name)):
            continue
        aside = f"{path}.provisioned"
        if os.path.isdir(path) and not os.path.islink(path) and os.path.lexists(aside):
            return (f"{path} is a directory and {aside} exists already: move one of them away by hand so "
                    f"the release's frontend can be linked at {path}")
    return ""


def static_undo(sites):
    """Remember where each static site's path points now; the function returned puts them back (a
    link to its old target, or the provisioned directory link_static moved aside)."""
    before = {path: (os.readlink(path) if os.path.islink(path) else None) for path in sites.values()}

    def undo():
        for path, target in before.items():
            if target is not None:
                swap_link(path, target)
            elif os.path.islink(path) and os.path.isdir(f"{path}.provisioned"):
                os.unlink(path)
                os.rename(f"{path}.provisioned", path)
    return undo


def _tail(text, lines=20):
    return "\n".join((text or "").strip().splitlines()[-lines:])


# Where pip's own wheel is on a host: Debian's and Ubuntu's python3-pip-whl (python3-venv needs it),
# then CPython's ensurepip.
PIP_WHEEL_GLOBS = ("/usr/share/python-wheels/pip-*.whl", "/usr/lib/python3*/ensurepip/_bundled/pip-*.whl")


def _version_key(path):
    version = os.path.basename(path).split("-")[1]
    return tuple(int(part) if part.isdigit() else 0 for part in version.split("."))


def find_pip_wheel(globs=PIP_WHEEL_GLOBS):
    """The newest pip wheel on this host ('' when there is none)."""
    found = [path for pattern in globs for path in glob.glob(pattern) if os.path.isfile(path)]
    return max(found, key=_version_key) if found else ""


def build_venv(run, python, venv, wheels, requirements, pip_wheel=""):
    """A fresh venv at venv with the requirements installed from wheels only. With pip_wheel (pip's
    own wheel on the host) the venv is made without pip and pip runs from that wheel: ensurepip's
    copy of pip into every venv takes about 3 s of a deploy; the venv then holds no pip (the app
    needs none; `python -m ensurepip` adds it)."""
    _remove(venv)
    argv = [python, "-m", "venv", "--without-pip", venv] if pip_wheel else [python, "-m", "venv", venv]
    rc, out, err = run(argv)
    if rc != 0:
        _remove(venv)
        raise InstallError(f"{' '.join(argv)} failed (rc {rc}): {_tail(err or out)}")
    pip = [os.path.join(venv, "bin", "python"), os.path.join(pip_wheel, "pip")] if pip_wheel \
        else [os.path.join(venv, "bin", "pip")]
    rc, out, err = run([*pip, "install", "--quiet", "--no-index",
                        "--disable-pip-version-check", "--no-compile", "--find-links", wheels,
                        "--requirement", requirements])
    if rc != 0:
        raise InstallError(f"installing the release's dependencies from its wheelhouse failed (rc {rc}); "
                           f"the colour keeps its old release. pip said: {_tail(err or out)}")


def install(run, base_dir, version, manifest, artifact, colour=None, unit=None, python="/usr/bin/python3",
            requirements="requirements.txt", shared_paths=(), uid=None, gid=None, check=False, clock=time.monotonic,
            pip_wheel=""):
    """Install release `version` into `colour` (or only unpack it, without a colour). `run(argv)`
    returns (rc, stdout, stderr). Returns what changed and each step's seconds."""
    bad = bad_paths(shared_paths)
    if bad:
        raise InstallError(f"not a path inside the release: {bad}; use relative paths such as app/images")
    release = os.path.join(base_dir, "releases", version)
    seconds = {}
    result = {"changed": False, "unpacked": False, "linked": [], "seeded": 0, "seconds": seconds}

    started = clock()
    if unit and colour:
        if check:
            result["changed"] = True
        else:
            rc, out, err = run(["systemctl", "stop", unit])
            if rc != 0:
                raise InstallError(f"cannot stop {unit} before replacing its release (rc {rc}): {_tail(err or out)}")
        seconds["stop"] = round(clock() - started, 2)

    started = clock()
    result["unpacked"] = unpack(artifact, release, manifest, check)
    result["changed"] |= result["unpacked"]
    seconds["unpack"] = round(clock() - started, 2)
    if check and result["unpacked"]:
        return result

    if shared_paths:
        started = clock()
        result["linked"], result["seeded"] = link_shared(release, os.path.join(base_dir, "shared"), list(shared_paths),
                                                         uid, gid, check=check)
        result["changed"] |= bool(result["linked"])
        seconds["shared_paths"] = round(clock() - started, 2)

    if not colour:
        return result
    result["changed"] = True
    if check:
        return result
    venv = os.path.join(base_dir, "venvs", f"{colour}-{version}")
    started = clock()
    build_venv(run, python, venv, os.path.join(release, "wheels"), os.path.join(release, requirements), pip_wheel)
    seconds["venv"] = round(clock() - started, 2)
    swap_link(os.path.join(base_dir, f"current-{colour}"), f"releases/{version}")
    swap_link(os.path.join(base_dir, "venvs", colour), f"{colour}-{version}")
    return result


# Pruning ----------------------------------------------------------------------------------------

def _link_name(path):
    """The last part of the target of a symlink at path, or '' when it is no link."""
    return os.path.basename(os.readlink(path).rstrip("/")) if os.path.islink(path) else ""


def prune(base_dir, keep, colours=("blue", "green"), check=False):
    """Keep the newest `keep` releases and never one a colour uses (current-<colour>); remove the
    venvs no colour uses (venvs/<colour>, or <colour>-<release of current-<colour>>). Each removal
    is a rename to .prune-<name> first, so a kill leaves no half-removed directory under a release's
    name; what an earlier kill left is removed too. Returns (releases removed, venvs removed)."""
    releases_dir, venvs_dir = os.path.join(base_dir, "releases"), os.path.join(base_dir, "venvs")
    current = {colour: _link_name(os.path.join(base_dir, f"current-{colour}")) for colour in colours}
    in_use = set(current.values()) - {""}
    venvs_in_use = {_link_name(os.path.join(venvs_dir, colour)) for colour in colours}
    venvs_in_use |= {f"{colour}-{release}" for colour, release in current.items()}

    def entries(folder):
        if not os.path.isdir(folder):
            return []
        return [entry for entry in os.scandir(folder)
                if not entry.name.startswith(".") and entry.is_dir(follow_symlinks=False)]

    releases = sorted(entries(releases_dir), key=lambda entry: entry.stat(follow_symlinks=False).st_mtime, reverse=True)
    newest = {entry.name for entry in releases[:max(int(keep), 0)]}
    old_releases = [entry.name for entry in releases if entry.name not in newest | in_use]
    old_venvs = sorted(entry.name for entry in entries(venvs_dir) if entry.name not in venvs_in_use)
    if not check:
        for folder, names in ((releases_dir, old_releases), (venvs_dir, old_venvs)):
            for name in names:
                os.rename(os.path.join(folder, name), os.path.join(folder, f".prune-{name}"))
            if os.path.isdir(folder):
                for leftover in os.listdir(folder):
                    if leftover.startswith(".prune-"):
                        _remove(os.path.join(folder, leftover))
    return sorted(old_releases), old_venvs
