"""Unit tests for the shared paths of plugins/module_utils/tsh_release.py (upload directories that outlive releases)."""

import importlib.util
import os
import pathlib

import pytest

_PATH = pathlib.Path(__file__).resolve().parents[2] / "plugins/module_utils/tsh_release.py"
_SPEC = importlib.util.spec_from_file_location("tsh_release", _PATH)
mod = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(mod)


def _release(tmp_path, name):
    release = tmp_path / "releases" / name
    (release / "app" / "images").mkdir(parents=True)
    (release / "app" / "images" / "placeholder.txt").write_text("shipped\n")
    (release / "app" / "main.py").write_text("")
    return release


def test_first_release_seeds_the_shared_directory_and_links_it(tmp_path):
    release = _release(tmp_path, "r1")
    shared = tmp_path / "shared"
    linked, seeded = mod.link_shared(str(release), str(shared), ["app/images"])
    assert linked == ["app/images"]
    assert seeded == 1
    assert os.readlink(release / "app/images") == str(shared / "app/images")
    assert (release / "app/images/placeholder.txt").read_text() == "shipped\n"
    assert oct((shared / "app/images").stat().st_mode & 0o777) == "0o750"


def test_uploads_survive_the_next_release(tmp_path):
    shared = tmp_path / "shared"
    r1 = _release(tmp_path, "r1")
    mod.link_shared(str(r1), str(shared), ["app/images"])
    (r1 / "app/images/upload.png").write_bytes(b"png")
    (shared / "app/images/placeholder.txt").write_text("edited by the app\n")
    r2 = _release(tmp_path, "r2")
    linked, seeded = mod.link_shared(str(r2), str(shared), ["app/images"])
    assert linked == ["app/images"]
    assert seeded == 0
    assert (r2 / "app/images/upload.png").read_bytes() == b"png"
    assert (r2 / "app/images/placeholder.txt").read_text() == "edited by the app\n"


def test_rerun_changes_nothing(tmp_path):
    release = _release(tmp_path, "r1")
    shared = tmp_path / "shared"
    mod.link_shared(str(release), str(shared), ["app/images"])
    assert mod.link_shared(str(release), str(shared), ["app/images"]) == ([], 0)


def test_rerun_after_a_kill_mid_seed(tmp_path):
    """A kill left a half-seeded temporary directory and a temporary link: the re-run converges."""
    release = _release(tmp_path, "r1")
    shared = tmp_path / "shared"
    (shared / "app" / "images.tsh-new").mkdir(parents=True)
    (shared / "app" / "images.tsh-new" / "half").write_text("")
    os.symlink("/nowhere", release / "app" / "images.tsh-link")
    linked, _ = mod.link_shared(str(release), str(shared), ["app/images"])
    assert linked == ["app/images"]
    assert sorted(os.listdir(shared / "app/images")) == ["placeholder.txt"]
    assert not (release / "app" / "images.tsh-link").is_symlink()


def test_path_missing_from_the_release_is_created(tmp_path):
    release = _release(tmp_path, "r1")
    mod.link_shared(str(release), str(tmp_path / "shared"), ["uploads/docs"])
    assert (release / "uploads/docs").is_symlink()
    assert (tmp_path / "shared/uploads/docs").is_dir()


def test_check_mode_reports_without_changing(tmp_path):
    release = _release(tmp_path, "r1")
    linked, _ = mod.link_shared(str(release), str(tmp_path / "shared"), ["app/images"], check=True)
    assert linked == ["app/images"]
    assert not (release / "app/images").is_symlink()
    assert not (tmp_path / "shared").exists()


@pytest.mark.parametrize("path", ["/etc", "../up", "app/../../x", ".", ""])
def test_paths_outside_the_release_are_refused(path):
    assert mod.bad_paths([path, "app/images"]) == [path]
