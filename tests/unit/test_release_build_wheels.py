"""Unit tests for the release build's wheelhouse (plugins/module_utils/tsh_release_build.py), offline:
pip reads only a local directory (--no-index --find-links) of tiny wheels and source distributions
made here, with every pip configuration of this machine switched off. Covers the missing-wheel
message, the pure-Python source fallback, markers of the target Python and the manifest.
test_release_build_playbook.py uses the same package directory for the module and the playbook."""

import importlib.util
import io
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
_PATH = REPO / "plugins/module_utils/tsh_release_build.py"
_SPEC = importlib.util.spec_from_file_location("tsh_release_build", _PATH)
trb = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(trb)

BACKEND = REPO / "tests/fixtures/tsh_backend"
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]
CONTROLLER = "%d.%d" % sys.version_info[:2]
# A target other than the controller's Python, for markers pip would evaluate wrongly.
OTHER = "3.9" if CONTROLLER != "3.9" else "3.10"


def offline_env():
    """This process's environment without pip's configuration (no index, cache or constraints)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    return env


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    for key in [k for k in os.environ if k.startswith("PIP_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)


def run(argv):
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def make_wheel(index, name, version, tag="py3-none-any", requires=()):
    dist = f"{name.replace('-', '_')}-{version}"
    path = index / f"{dist}-{tag}.whl"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {r}\n" for r in requires)
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(f"{name.replace('-', '_')}/__init__.py", "")
        wheel.writestr(f"{dist}.dist-info/METADATA", metadata)
        wheel.writestr(f"{dist}.dist-info/WHEEL", f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: {tag}\n")
        wheel.writestr(f"{dist}.dist-info/RECORD", "")
    return path


# A PEP 517 backend inside the sdist (backend-path), so building it needs nothing from an index.
BACKEND_PY = '''\
import os, zipfile
NAME, VERSION, TAG, REQUIRES = {name!r}, {version!r}, {tag!r}, {requires!r}
DIST = NAME.replace("-", "_") + "-" + VERSION
META = "Metadata-Version: 2.1\\nName: %s\\nVersion: %s\\n" % (NAME, VERSION) + "".join(
    "Requires-Dist: %s\\n" % r for r in REQUIRES)

def get_requires_for_build_wheel(config_settings=None):
    return []

def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    path = os.path.join(metadata_directory, DIST + ".dist-info")
    os.makedirs(path)
    with open(os.path.join(path, "METADATA"), "w") as f:
        f.write(META)
    return DIST + ".dist-info"

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name = "%s-%s.whl" % (DIST, TAG)
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as wheel:
        wheel.writestr(NAME.replace("-", "_") + "/__init__.py", "")
        wheel.writestr(DIST + ".dist-info/METADATA", META)
        wheel.writestr(DIST + ".dist-info/WHEEL", "Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\nTag: %s\\n" % TAG)
        wheel.writestr(DIST + ".dist-info/RECORD", "")
    return name
'''


def make_sdist(index, name, version, tag="py3-none-any", requires=()):
    base = f"{name}-{version}"
    files = {
        "pyproject.toml": '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n',
        "backend.py": BACKEND_PY.format(name=name, version=version, tag=tag, requires=list(requires)),
        "PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
    }
    path = index / f"{base}.tar.gz"
    with tarfile.open(path, "w:gz") as sdist:
        for rel, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{base}/{rel}")
            info.size = len(data)
            sdist.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture()
def index(tmp_path):
    """The local package directory: pure wheels, a compiled-only package, sdists."""
    path = tmp_path / "index"
    path.mkdir()
    make_wheel(path, "tshcore", "1.0")
    make_wheel(path, "tshcompat", "1.1")
    make_wheel(path, "tshasync", "2.0", requires=["tshcore>=1.0", f'tshcompat>=1.0; python_version == "{OTHER}"'])
    make_wheel(path, "tshfast", "2.0", tag="cp311-cp311-manylinux_2_17_x86_64")
    make_sdist(path, "tshpure", "0.3", requires=["tshcore==1.0"])
    make_sdist(path, "tshnative", "1.0", tag="cp311-cp311-linux_x86_64")
    return path


def backend(tmp_path, requirements):
    """A copy of tests/fixtures/tsh_backend with these requirements."""
    root = tmp_path / "src/tsh_backend"
    shutil.copytree(BACKEND, root)
    (root / "requirements.txt").write_text("".join(r + "\n" for r in requirements))
    return root


def build(tmp_path, index, requirements, pythons, **overrides):
    root = backend(tmp_path, requirements)
    params = {"src": str(root), "repo": "", "ref": "", "base_dir": None, "subdir": "",
              "include": ["app", "requirements.txt", "config", "database"], "exclude": None,
              "ignore_file": ".releaseignore", "always_include": ["static/admin", "static/consumer"],
              "requirements": "requirements.txt", "python_versions": pythons, "host_python_versions": {},
              "platforms": PLATFORMS, "implementation": "cp", "pip_python": sys.executable,
              "pip_options": ["--no-index", "--find-links", str(index), "--no-cache-dir"],
              "version": "t1", "faults": {}, "dest": str(tmp_path / "stage/release"), "artifact_dir": None}
    params.update(overrides)
    return trb.build(params, run), tmp_path / "stage/release"


def wheels(dest):
    return sorted(p.name for p in (dest / "wheels").iterdir())


def test_wheelhouse_and_manifest(tmp_path, index):
    result, dest = build(tmp_path, index, ["tshcore==1.0"], ["3.11", "3.13"], faults={"health": "fail"})
    assert wheels(dest) == ["tshcore-1.0-py3-none-any.whl"]
    manifest = json.loads((dest / "RELEASE.json").read_text())
    assert manifest["python_versions"] == ["3.11", "3.13"]
    assert manifest["include"] == ["app", "requirements.txt", "config", "database"]
    assert manifest["exclude"] == trb.DEFAULT_EXCLUDE
    assert manifest["version"] == "t1" and (dest / "VERSION").read_text() == "t1\n"
    assert json.loads((dest / "FAULTS.json").read_text()) == {"health": "fail"}
    assert set(manifest["files"]) == {
        "VERSION", "FAULTS.json", "requirements.txt", "wheels/tshcore-1.0-py3-none-any.whl", "app/__init__.py",
        "app/main.py", "app/images/placeholder.txt", "app/static/site.css", "config/__init__.py",
        "config/settings.py", "database/migrations/0001_initial.sql"}
    assert manifest["files"]["app/main.py"] == trb.sha256_files(str(BACKEND))["app/main.py"]
    assert not (dest / "mobile").exists() and not (dest / "docs").exists()
    assert result["files"] == 8 and result["wheels"] == ["tshcore-1.0-py3-none-any.whl"]


def test_missing_wheel_names_package_version_and_python(tmp_path, index):
    with pytest.raises(trb.BuildError) as error:
        build(tmp_path, index, ["tshcore==1.0", "tshfast==2.0"], ["3.13"])
    assert str(error.value).startswith(
        "no wheel of tshfast 2.0 for CPython 3.13 on manylinux x86_64; pick a version with wheels for 3.13 or "
        "target another Python")
    assert "compiled wheels (one for CPython 3.11)" in str(error.value)


def test_pure_python_source_is_built_into_a_wheel(tmp_path, index):
    result, dest = build(tmp_path, index, ["tshpure==0.3"], ["3.11", "3.13"])
    assert wheels(dest) == ["tshcore-1.0-py3-none-any.whl", "tshpure-0.3-py3-none-any.whl"]
    assert result["built_from_sdist"] == ["tshpure-0.3-py3-none-any.whl"]
    assert json.loads((dest / "RELEASE.json").read_text())["built_from_sdist"] == ["tshpure-0.3-py3-none-any.whl"]


class ScriptedPip:
    """Stands in for pip where only its answers matter: download fails for `missing`, the probes
    find no wheel for any other Python, and `pip wheel` builds `built` (or finds no source)."""

    def __init__(self, missing, built=None):
        self.missing, self.built, self.calls = missing, built, []

    def __call__(self, argv):
        command = argv[3]
        self.calls.append(command)
        nothing = (f"ERROR: Could not find a version that satisfies the requirement {self.missing} "
                   f"(from versions: none)\nERROR: No matching distribution found for {self.missing}\n")
        if command == "wheel" and self.built:
            out_dir = argv[argv.index("--wheel-dir") + 1]
            pathlib.Path(out_dir, self.built).write_bytes(b"")
            return 0, "", ""
        return 1, "", nothing


def scripted_build(tmp_path, pip):
    backend(tmp_path, [pip.missing])
    wheelhouse = trb.Wheelhouse(pip, sys.executable, str(tmp_path / "wheels"), str(tmp_path), PLATFORMS)
    wheelhouse.download("3.12", str(tmp_path / "src/tsh_backend/requirements.txt"))


def test_requirement_with_neither_wheel_nor_source(tmp_path):
    pip = ScriptedPip("tshnone==1.0")
    with pytest.raises(trb.BuildError) as error:
        scripted_build(tmp_path, pip)
    assert str(error.value) == ("no wheel of tshnone 1.0 for CPython 3.12 on manylinux x86_64; pick a version "
                                "with wheels for 3.12 or target another Python.")
    assert pip.calls == ["download"] + ["install"] * len(trb.probe_order("3.12")) + ["wheel"]


def test_compiled_source_is_refused(tmp_path):
    pip = ScriptedPip("tshnative==1.0", built="tshnative-1.0-cp311-cp311-linux_x86_64.whl")
    with pytest.raises(trb.BuildError, match=r"^tshnative 1\.0 needs a compiled wheel: there is none for CPython "
                                             r"3\.12 on manylinux x86_64 and its source builds "
                                             r"tshnative-1\.0-cp311-cp311-linux_x86_64\.whl"):
        scripted_build(tmp_path, pip)


def test_target_markers_add_what_pip_left_out(tmp_path, index):
    """pip evaluates python_version markers with the controller's Python: tshasync needs tshcompat
    only on OTHER, which pip run by CONTROLLER leaves out."""
    result, dest = build(tmp_path, index, ["tshasync==2.0"], [OTHER])
    assert "tshcompat-1.1-py3-none-any.whl" in wheels(dest)
    assert result["added_for_markers"] == {OTHER: ["tshcompat>=1.0"]}
    result, dest = build(tmp_path / "b", index, ["tshasync==2.0"], [CONTROLLER])
    assert wheels(dest) == ["tshasync-2.0-py3-none-any.whl", "tshcore-1.0-py3-none-any.whl"]
    assert result["added_for_markers"] == {}


def test_missing_for_python_takes_the_wheels_pip_takes(tmp_path):
    make_wheel(tmp_path, "tshold", "0.1", tag="cp310-cp310-manylinux1_x86_64")
    assert trb.expand_platforms(PLATFORMS) == ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
                                               "manylinux2010_x86_64", "manylinux1_x86_64"]
    assert trb.missing_for_python(["tshold==0.1"], str(tmp_path), "3.10", PLATFORMS) == []
    assert trb.missing_for_python(["tshold==0.1"], str(tmp_path), "3.11", PLATFORMS) == ["tshold==0.1"]


def test_missing_for_python_follows_extras(tmp_path):
    make_wheel(tmp_path, "tshweb", "1.0", requires=['tshcore; extra == "fast"', "tshcompat"])
    make_wheel(tmp_path, "tshcompat", "1.1")
    assert trb.missing_for_python(["tshweb==1.0"], str(tmp_path), "3.11", PLATFORMS) == []
    assert trb.missing_for_python(["tshweb[fast]==1.0"], str(tmp_path), "3.11", PLATFORMS) == ["tshcore"]


# Progress while the wheels download ----------------------------------------------------------
class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_pip_progress_reports_fetches_at_most_every_few_seconds():
    said, clock = [], FakeClock()
    report = trb.PipProgress("3.11", said.append, every=5.0, clock=clock)
    for text in ["Looking in indexes: https://pypi.org/simple\n", "Collecting numpy==1.26.4\n",
                 "  Downloading numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.whl (18.2 MB)\n",
                 "Collecting six==1.16.0\n"]:
        report.line(text)
    clock.now += 2  # within `every` of the last line: not repeated
    report.line("  Downloading six-1.16.0-py2.py3-none-any.whl (11 kB)\n")
    clock.now += 4
    report.line("Collecting idna==3.7\n")
    report.line("  File was already downloaded /w/idna-3.7-py3-none-any.whl\n")
    report.line("Processing ./built/tshpure-0.3-py3-none-any.whl\n")
    clock.now += 1
    report.done(0)
    assert said == [
        "wheels for CPython 3.11: resolving the requirements",
        "wheels for CPython 3.11: 1 requirement so far, fetching "
        "numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.whl (18.2 MB)",
        "wheels for CPython 3.11: 4 requirements so far, fetching tshpure-0.3-py3-none-any.whl",
        "wheels for CPython 3.11: done after 7 s: 4 requirements (2 downloaded, 1 already there, "
        "1 from local files)",
    ]


def test_pip_progress_says_when_pip_stopped():
    said = []
    report = trb.PipProgress("3.13", said.append, clock=FakeClock())
    report.done(1)
    assert said[-1].startswith("wheels for CPython 3.13: pip stopped (rc 1) after 0 s")


def test_run_streaming_hands_over_lines_as_they_come():
    seen = []
    rc, out, err = trb.run_streaming(
        [sys.executable, "-c", "import sys; print('a'); sys.stdout.flush(); print('b'); sys.stderr.write('e\\n')"],
        seen.append)
    assert (rc, out, err, seen) == (0, "a\nb\n", "e\n", ["a\n", "b\n"])


def test_wheelhouse_reports_progress_and_still_reads_pip_failures(tmp_path):
    """With progress on, downloads go through run_lines; a failure is read from stderr as before."""
    said, pip = [], ScriptedPip("tshnone==1.0")
    backend(tmp_path, [pip.missing])

    def run_lines(argv, on_line):
        on_line("Collecting tshnone==1.0\n")
        return pip(argv)

    wheelhouse = trb.Wheelhouse(pip, sys.executable, str(tmp_path / "wheels"), str(tmp_path), PLATFORMS,
                                progress=said.append, run_lines=run_lines)
    with pytest.raises(trb.BuildError, match="no wheel of tshnone 1.0 for CPython 3.12"):
        wheelhouse.download("3.12", str(tmp_path / "src/tsh_backend/requirements.txt"))
    assert said[0] == "wheels for CPython 3.12: resolving the requirements"
    assert said[-1].startswith("wheels for CPython 3.12: pip stopped (rc 1)") and "1 requirement (" in said[-1]
