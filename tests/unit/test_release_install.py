"""Unit tests for plugins/module_utils/tsh_release.py: installing a release into a colour, against
real files and real tarballs (the venv and pip commands are recorded by a fake `run`)."""

import importlib.util
import io
import json
import os
import pathlib
import tarfile

import pytest

_PATH = pathlib.Path(__file__).resolve().parents[2] / "plugins/module_utils/tsh_release.py"
_SPEC = importlib.util.spec_from_file_location("tsh_release", _PATH)
tr = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(tr)

MANIFEST = {"version": "v1", "built_at": "2026-12-04T03:00:00Z", "files": {"app/main.py": "ab12"}}


def artifact(path, manifest=MANIFEST, extra=()):
    """A release artifact as build.yml writes it: RELEASE.json, the app, a wheelhouse, requirements."""
    with tarfile.open(path, "w:gz") as tar:
        def add(name, data=b"", kind=tarfile.REGTYPE, linkname=""):
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.size, info.mode = kind, linkname, len(data), 0o644
            info.uid = info.gid = 1234
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
        add("RELEASE.json", json.dumps(manifest).encode())
        add("app/main.py", b"print('v1')\n")
        add("app/images/placeholder.txt", b"shipped\n")
        add("wheels/dep-1.0-py3-none-any.whl", b"wheel")
        add("requirements.txt", b"dep==1.0\n")
        for item in extra:
            add(*item)
    return str(path)


class Run:
    """A fake run(argv): records the commands; venv creates the directory with bin/pip."""

    def __init__(self, fail=None):
        self.calls, self.fail = [], fail

    def __call__(self, argv):
        self.calls.append(argv)
        word = "venv" if argv[1:3] == ["-m", "venv"] else \
            "pip" if argv[1:2] and argv[1].endswith(".whl/pip") else os.path.basename(argv[0])
        if word == self.fail:
            return 1, "", f"{word} failed\nERROR: No matching distribution found for dep==1.0"
        if word == "venv":
            os.makedirs(os.path.join(argv[-1], "bin"))
        return 0, "", ""


@pytest.fixture()
def base(tmp_path):
    for sub in ("releases", "venvs", "shared"):
        (tmp_path / sub).mkdir()
    return tmp_path


def incoming(base, manifest=MANIFEST, extra=()):
    return artifact(base / "releases/.incoming-v1.tar.gz", manifest, extra)


def test_install_unpacks_builds_the_venv_and_points_the_colour(base):
    run = Run()
    result = tr.install(run, str(base), "v1", MANIFEST, incoming(base), colour="green", unit="tsh_erp-green",
                        shared_paths=["app/images"])
    assert result["changed"] and result["unpacked"] and result["linked"] == ["app/images"]
    assert run.calls[0] == ["systemctl", "stop", "tsh_erp-green"]
    venv = str(base / "venvs/green-v1")
    assert run.calls[1] == ["/usr/bin/python3", "-m", "venv", venv]
    assert run.calls[2][:2] == [venv + "/bin/pip", "install"] and "--no-index" in run.calls[2]
    assert run.calls[2][-1] == str(base / "releases/v1/requirements.txt")
    assert os.readlink(base / "current-green") == "releases/v1"
    assert os.readlink(base / "venvs/green") == "green-v1"
    assert (base / "releases/v1/app/main.py").read_text() == "print('v1')\n"
    assert os.readlink(base / "releases/v1/app/images") == str(base / "shared/app/images")
    assert not (base / "releases/.incoming-v1.tar.gz").exists()
    assert not (base / "releases/.unpack-v1").exists()
    assert set(result["seconds"]) == {"stop", "unpack", "shared_paths", "venv"}


def test_owner_from_the_archive_is_not_kept_when_run_as_root(base):
    tr.install(Run(), str(base), "v1", MANIFEST, incoming(base))
    owner = (base / "releases/v1/app/main.py").stat().st_uid
    assert owner == (0 if os.geteuid() == 0 else os.geteuid())


def test_a_release_already_there_is_reused_and_the_venv_rebuilt(base):
    tr.install(Run(), str(base), "v1", MANIFEST, incoming(base), colour="blue")
    (base / "releases/v1/app/marker").write_text("kept")
    run = Run()
    result = tr.install(run, str(base), "v1", MANIFEST, str(base / "releases/.incoming-v1.tar.gz"), colour="blue")
    assert not result["unpacked"] and result["changed"]
    assert (base / "releases/v1/app/marker").read_text() == "kept"
    assert [call[1:3] for call in run.calls][0] == ["-m", "venv"]


def test_a_different_build_under_the_same_id_is_refused(base):
    tr.install(Run(), str(base), "v1", MANIFEST, incoming(base))
    other = dict(MANIFEST, built_at="2026-12-05T00:00:00Z")
    with pytest.raises(tr.InstallError, match="holds a different build than the artifact .RELEASE.json differs.. "
                                              "Build with a new version id"):
        tr.install(Run(), str(base), "v1", other, incoming(base, other), colour="green")
    assert not (base / "current-green").exists()


def test_an_upload_that_is_not_the_checked_release_installs_nothing(base):
    other = dict(MANIFEST, version="v9")
    with pytest.raises(tr.InstallError, match="does not hold the release the controller read"):
        tr.install(Run(), str(base), "v1", MANIFEST, incoming(base, other), colour="green")
    assert sorted(os.listdir(base / "releases")) == [".incoming-v1.tar.gz"]


def test_a_half_unpacked_release_from_a_killed_run_is_replaced(base):
    (base / "releases/.unpack-v1/app").mkdir(parents=True)
    (base / "releases/v1").mkdir()  # no RELEASE.json: never completed
    (base / "releases/v1/stale").write_text("")
    tr.install(Run(), str(base), "v1", MANIFEST, incoming(base))
    assert sorted(os.listdir(base / "releases/v1")) == ["RELEASE.json", "app", "requirements.txt", "wheels"]


@pytest.mark.parametrize("member", [
    ("../escape.txt", b"x"),
    ("/etc/passwd-tsh", b"x"),
    ("app/link", b"", tarfile.SYMTYPE, "../../../etc/shadow"),
    ("dev/null", b"", tarfile.CHRTYPE),
])
def test_members_outside_the_release_or_devices_are_refused(base, member):
    with pytest.raises(tr.InstallError, match="refused"):
        tr.install(Run(), str(base), "v1", MANIFEST, incoming(base, extra=[member]), colour="green")
    assert not (base / "releases/v1").exists() and not (base / "current-green").exists()


def test_a_failing_pip_leaves_the_colour_on_its_old_release(base):
    tr.install(Run(), str(base), "v1", MANIFEST, incoming(base), colour="green")
    v2 = dict(MANIFEST, version="v2")
    art = artifact(base / "releases/.incoming-v2.tar.gz", v2)
    with pytest.raises(tr.InstallError, match="(?s)the colour keeps its old release. pip said: .*No matching distribution"):
        tr.install(Run(fail="pip"), str(base), "v2", v2, art, colour="green")
    assert os.readlink(base / "current-green") == "releases/v1"
    assert os.readlink(base / "venvs/green") == "green-v1"


def test_a_failing_venv_names_the_interpreter(base):
    with pytest.raises(tr.InstallError, match=r"/usr/bin/python3.10 -m venv .* failed \(rc 1\)"):
        tr.install(Run(fail="venv"), str(base), "v1", MANIFEST, incoming(base), colour="blue",
                   python="/usr/bin/python3.10")
    assert not (base / "venvs/blue-v1").exists()


def test_a_unit_that_cannot_stop_is_reported_before_anything_changes(base):
    with pytest.raises(tr.InstallError, match="cannot stop tsh_erp-blue"):
        tr.install(Run(fail="systemctl"), str(base), "v1", MANIFEST, incoming(base), colour="blue", unit="tsh_erp-blue")
    assert not (base / "releases/v1").exists()


def test_unpack_only_without_a_colour(base):
    run = Run()
    result = tr.install(run, str(base), "v1", MANIFEST, incoming(base))
    assert result["unpacked"] and run.calls == []
    assert list((base / "venvs").iterdir()) == [] and not (base / "current-blue").exists()


def test_check_mode_changes_nothing(base):
    art = incoming(base)
    result = tr.install(Run(), str(base), "v1", MANIFEST, art, colour="green", unit="tsh_erp-green", check=True)
    assert result["changed"]
    assert sorted(os.listdir(base / "releases")) == [".incoming-v1.tar.gz"]


def test_shared_paths_outside_the_release_are_refused(base):
    with pytest.raises(tr.InstallError, match="not a path inside the release"):
        tr.install(Run(), str(base), "v1", MANIFEST, incoming(base), colour="green", shared_paths=["../x"])


def test_swap_link_is_a_no_op_when_the_link_is_right(base):
    assert tr.swap_link(str(base / "current-blue"), "releases/v1")
    assert not tr.swap_link(str(base / "current-blue"), "releases/v1")
    assert not (base / ".current-blue.new").exists()


def test_static_sites_link_to_the_release_and_keep_a_provisioned_directory(base):
    release = base / "releases/v2"
    (release / "static/admin").mkdir(parents=True)
    www = base / "www"
    (www / "admin").mkdir(parents=True)
    (www / "admin/index.html").write_text("provisioned\n")
    sites = {"admin": str(www / "admin"), "consumer": str(www / "consumer")}
    assert tr.link_static(str(release), sites, check=True) == ["admin"]
    assert not os.path.islink(www / "admin")
    assert tr.link_static(str(release), sites) == ["admin"]
    assert os.readlink(www / "admin") == str(release / "static/admin")
    assert (www / "admin.provisioned/index.html").read_text() == "provisioned\n"
    assert not (www / "consumer").exists()  # the release ships no consumer frontend
    assert tr.link_static(str(release), sites) == []
    (base / "releases/v3/static/admin").mkdir(parents=True)
    assert tr.link_static(str(base / "releases/v3"), sites) == ["admin"]
    assert os.readlink(www / "admin") == str(base / "releases/v3/static/admin")


def test_static_site_refuses_to_overwrite_a_kept_directory(base):
    (base / "releases/v2/static/admin").mkdir(parents=True)
    (base / "www/admin").mkdir(parents=True)
    (base / "www/admin.provisioned").mkdir()
    with pytest.raises(tr.InstallError, match="admin.provisioned exists already"):
        tr.link_static(str(base / "releases/v2"), {"admin": str(base / "www/admin")})
    assert (base / "www/admin").is_dir()
    # Asked before traffic moves, the same refusal changes nothing.
    problem = tr.static_conflict(str(base / "releases/v2"), {"admin": str(base / "www/admin")})
    assert "admin.provisioned exists already" in problem
    assert tr.static_conflict(str(base / "releases/v2"), {"consumer": str(base / "www/consumer")}) == ""


def test_static_undo_puts_back_links_and_the_provisioned_directory(base):
    for version in ("v1", "v2"):
        for site in ("admin", "consumer"):
            (base / f"releases/{version}/static/{site}").mkdir(parents=True)
    www = base / "www"
    (www / "admin").mkdir(parents=True)  # provisioned, never linked yet
    sites = {"admin": str(www / "admin"), "consumer": str(www / "consumer")}
    os.symlink(base / "releases/v1/static/consumer", www / "consumer")
    undo = tr.static_undo(sites)
    assert tr.link_static(str(base / "releases/v2"), sites) == ["admin", "consumer"]
    undo()
    assert (www / "admin").is_dir() and not os.path.islink(www / "admin")
    assert not (www / "admin.provisioned").exists()
    assert os.readlink(www / "consumer") == str(base / "releases/v1/static/consumer")


def _releases(base, names):
    for age, name in enumerate(reversed(names)):
        (base / "releases" / name).mkdir()
        os.utime(base / "releases" / name, (1_000_000 + age, 1_000_000 + age))


def test_prune_keeps_the_newest_and_the_ones_in_use(base):
    _releases(base, ["r7", "r6", "r5", "r4", "r3", "r2", "r1"])  # r7 newest
    os.symlink("releases/r1", base / "current-blue")
    os.symlink("releases/r7", base / "current-green")
    for name in ("blue-r1", "green-r7", "green-r6", "blue-r3"):
        (base / "venvs" / name).mkdir()
    os.symlink("blue-r1", base / "venvs/blue")
    os.symlink("green-r7", base / "venvs/green")
    assert tr.prune(str(base), 3) == (["r2", "r3", "r4"], ["blue-r3", "green-r6"])
    assert sorted(os.listdir(base / "releases")) == ["r1", "r5", "r6", "r7"]
    assert sorted(os.listdir(base / "venvs")) == ["blue", "blue-r1", "green", "green-r7"]
    assert tr.prune(str(base), 3) == ([], [])


def test_prune_in_check_mode_removes_nothing(base):
    _releases(base, ["r3", "r2", "r1"])
    assert tr.prune(str(base), 1, check=True) == (["r1", "r2"], [])
    assert sorted(os.listdir(base / "releases")) == ["r1", "r2", "r3"]


def test_prune_finishes_what_a_killed_prune_left(base):
    _releases(base, ["r1"])
    (base / "releases/.prune-r0/app").mkdir(parents=True)
    (base / "releases/.unpack-r2").mkdir()
    assert tr.prune(str(base), 5) == ([], [])
    assert sorted(os.listdir(base / "releases")) == [".unpack-r2", "r1"]


def test_with_pips_wheel_the_venv_is_made_without_pip_and_pip_runs_from_the_wheel(base):
    run = Run()
    wheel = "/usr/share/python-wheels/pip-23.0.1-py3-none-any.whl"
    tr.install(run, str(base), "v1", MANIFEST, incoming(base), colour="green", unit="tsh_erp-green", pip_wheel=wheel)
    venv = str(base / "venvs/green-v1")
    assert run.calls[1] == ["/usr/bin/python3", "-m", "venv", "--without-pip", venv]
    assert run.calls[2][:3] == [venv + "/bin/python", wheel + "/pip", "install"] and "--no-index" in run.calls[2]
    assert os.readlink(base / "venvs/green") == "green-v1"


def test_a_failing_pip_from_the_wheel_keeps_the_old_release(base):
    run = Run(fail="pip")
    with pytest.raises(tr.InstallError, match="wheelhouse failed"):
        tr.install(run, str(base), "v1", MANIFEST, incoming(base), colour="green", unit="tsh_erp-green",
                   pip_wheel="/w/pip-23.0.1-py3-none-any.whl")
    assert not (base / "current-green").exists()


def test_find_pip_wheel_takes_the_newest(tmp_path):
    for name in ("pip-9.0.1-py3-none-any.whl", "pip-23.0.1-py3-none-any.whl", "pip-22.0.2-py3-none-any.whl",
                 "setuptools-66.1.1-py3-none-any.whl"):
        (tmp_path / name).write_text("")
    assert tr.find_pip_wheel([str(tmp_path / "pip-*.whl")]) == str(tmp_path / "pip-23.0.1-py3-none-any.whl")
    assert tr.find_pip_wheel([str(tmp_path / "none-*.whl")]) == ""


def test_pips_wheel_really_installs_from_a_wheelhouse(tmp_path):
    """The real thing, no fake: a venv without pip, pip run from its wheel, a package from wheels only."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415
    wheel = tr.find_pip_wheel(tr.PIP_WHEEL_GLOBS + (os.path.join(os.path.dirname(os.__file__), "ensurepip/_bundled/pip-*.whl"),))
    if not wheel:
        pytest.skip("no pip wheel on this machine")
    import zipfile  # noqa: PLC0415
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    # A pure-Python wheel written by hand: no network, no build backend.
    with zipfile.ZipFile(wheels / "tshprobe-1.0-py3-none-any.whl", "w") as whl:
        whl.writestr("tshprobe.py", "VERSION = '1.0'\n")
        whl.writestr("tshprobe-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: tshprobe\nVersion: 1.0\n")
        whl.writestr("tshprobe-1.0.dist-info/WHEEL",
                     "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        whl.writestr("tshprobe-1.0.dist-info/RECORD", "")
    (tmp_path / "requirements.txt").write_text("tshprobe==1.0\n")

    def run(argv):
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        return proc.returncode, proc.stdout, proc.stderr

    venv = str(tmp_path / "venv")
    tr.build_venv(run, sys.executable, venv, str(wheels), str(tmp_path / "requirements.txt"), wheel)
    assert not os.path.exists(os.path.join(venv, "bin", "pip"))
    out = subprocess.run([os.path.join(venv, "bin", "python"), "-c", "import tshprobe; print(tshprobe.VERSION)"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == "1.0"
