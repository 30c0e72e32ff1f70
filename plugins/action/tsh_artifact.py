"""tsh_artifact: find a release artifact on the controller, check it and read its manifest, in one
step of the play (no round trip to a host). Used by playbooks/deploy.yml; unit tests in
tests/unit/test_artifact.py.

Returns artifact (path), sha256, sha1 (copy's transfer check takes SHA-1), manifest (RELEASE.json)
and version. Fails, naming the fix, without a release named, without the file, when the file does
not match its .sha256 file, without a readable RELEASE.json, or when it holds another version than
asked for."""

from __future__ import annotations

import hashlib
import json
import os
import tarfile

from ansible.plugins.action import ActionBase


class ArtifactError(Exception):
    """A refusal, with the message to show the operator."""


def read_artifact(release_artifact: str, release_version: str, build_dir: str) -> dict:
    if not release_artifact and not release_version:
        raise ArtifactError(f"Name the release: -e release_version=<id> (artifact in {build_dir}) or "
                            "-e release_artifact=<path to tsh_erp-<id>.tar.gz>. Build one with playbooks/build.yml.")
    path = release_artifact or os.path.join(build_dir, f"tsh_erp-{release_version}.tar.gz")
    if not os.path.isfile(path):
        raise ArtifactError(f"No artifact at {path}. Build it with: ansible-playbook playbooks/build.yml -e app_src=<dir>")
    sha256, sha1 = hashlib.sha256(), hashlib.sha1()  # noqa: S324 (copy's transfer check, not security)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha256.update(block)
            sha1.update(block)
    checksum_file = path + ".sha256"
    if os.path.exists(checksum_file):
        with open(checksum_file, encoding="utf-8") as f:
            recorded = (f.read().split() or [""])[0]
        if recorded != sha256.hexdigest():
            raise ArtifactError(f"{path} does not match {path}.sha256: the artifact is corrupt or was changed.")
    try:
        with tarfile.open(path, "r:gz") as tar:
            member = tar.extractfile("RELEASE.json")
            manifest = json.load(member)
    except (tarfile.TarError, KeyError, OSError, ValueError, AttributeError) as exc:
        raise ArtifactError(f"{path} is not a TSH ERP release (no readable RELEASE.json: {exc}). "
                            "Build it with playbooks/build.yml.") from exc
    version = str(manifest.get("version", ""))
    if release_version and release_version != version:
        raise ArtifactError(f"{path} holds version {version}, not {release_version}.")
    return {"artifact": path, "sha256": sha256.hexdigest(), "sha1": sha1.hexdigest(), "manifest": manifest,
            "version": version}


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("release_artifact", "release_version", "build_dir"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = self._task.args
        try:
            result.update(read_artifact(str(args.get("release_artifact") or ""), str(args.get("release_version") or ""),
                                        str(args.get("build_dir") or "")))
        except ArtifactError as exc:
            result.update(failed=True, msg=str(exc))
        result["changed"] = False
        return result
