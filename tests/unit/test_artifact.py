"""Unit tests for plugins/action/tsh_artifact.py: finding and checking a release artifact on the
controller, against real tarballs."""

import hashlib
import importlib.util
import io
import json
import pathlib
import tarfile

import pytest

_PATH = pathlib.Path(__file__).resolve().parents[2] / "plugins/action/tsh_artifact.py"
_SPEC = importlib.util.spec_from_file_location("tsh_artifact", _PATH)
ta = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(ta)


def build(folder, version="v1", manifest_version=None, checksum=True, manifest=True):
    path = folder / f"tsh_erp-{version}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        if manifest:
            data = json.dumps({"version": manifest_version or version, "files": {}}).encode()
            info = tarfile.TarInfo("RELEASE.json")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    if checksum:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        (folder / f"{path.name}.sha256").write_text(f"{digest}  {path.name}\n")
    return path


def test_found_by_version_in_the_build_dir(tmp_path):
    path = build(tmp_path)
    found = ta.read_artifact("", "v1", str(tmp_path))
    assert found["artifact"] == str(path) and found["version"] == "v1"
    assert found["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert found["sha1"] == hashlib.sha1(path.read_bytes()).hexdigest()  # noqa: S324
    assert found["manifest"] == {"version": "v1", "files": {}}


def test_found_by_path_and_versioned_by_its_manifest(tmp_path):
    path = build(tmp_path, "anything", manifest_version="2026.12.04-1", checksum=False)
    assert ta.read_artifact(str(path), "", "/nowhere")["version"] == "2026.12.04-1"


def test_no_release_named(tmp_path):
    with pytest.raises(ta.ArtifactError, match=r"^Name the release: -e release_version=<id> \(artifact in /b\)"):
        ta.read_artifact("", "", "/b")


def test_missing_artifact_names_the_build(tmp_path):
    with pytest.raises(ta.ArtifactError, match="^No artifact at .*tsh_erp-v9.tar.gz. Build it with: ansible-playbook"):
        ta.read_artifact("", "v9", str(tmp_path))


def test_a_changed_artifact_fails_its_checksum_file(tmp_path):
    path = build(tmp_path)
    with open(path, "ab") as f:
        f.write(b"tampered")
    with pytest.raises(ta.ArtifactError, match="does not match .*sha256: the artifact is corrupt or was changed"):
        ta.read_artifact("", "v1", str(tmp_path))


def test_a_renamed_artifact_is_refused(tmp_path):
    build(tmp_path, "v2", manifest_version="v1")
    with pytest.raises(ta.ArtifactError, match="holds version v1, not v2"):
        ta.read_artifact("", "v2", str(tmp_path))


@pytest.mark.parametrize("content", [None, b"not a tarball"])
def test_not_a_release(tmp_path, content):
    path = build(tmp_path, checksum=False, manifest=False)
    if content:
        path.write_bytes(content)
    with pytest.raises(ta.ArtifactError, match="is not a TSH ERP release .no readable RELEASE.json"):
        ta.read_artifact(str(path), "", "")
