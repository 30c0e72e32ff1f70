"""Unit tests for the release build's decisions (plugins/module_utils/tsh_release_build.py): paths,
file selection (build_include, build_exclude, .releaseignore), target Pythons, pip's errors. No pip,
no network, no Ansible run; test_release_build_wheels.py covers the wheelhouse and the playbook."""

import datetime
import importlib.util
import os
import pathlib
import shutil
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
_PATH = REPO / "plugins/module_utils/tsh_release_build.py"
_SPEC = importlib.util.spec_from_file_location("tsh_release_build", _PATH)
trb = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(trb)

BACKEND = REPO / "tests/fixtures/tsh_backend"
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]
BACKEND_ONLY = ["app", "requirements.txt", "config", "database"]


def run(argv):
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


# Paths -------------------------------------------------------------------------------------------
def test_relative_paths_resolve_from_the_base_directory(tmp_path):
    assert trb.resolve_path("../tsh-erp-backend", "/home/me/tsh-infra") == "/home/me/tsh-erp-backend"
    assert trb.resolve_path("tests/fixtures/x", "/repo") == "/repo/tests/fixtures/x"
    assert trb.resolve_path("/srv/backend/", "/repo") == "/srv/backend"
    assert trb.resolve_path("~/backend", "/repo") == os.path.expanduser("~/backend")


def test_relative_path_without_base_directory_fails():
    with pytest.raises(trb.BuildError, match="relative"):
        trb.resolve_path("backend", None)


@pytest.mark.parametrize(("value", "expected"), [("", ""), (".", ""), ("backend", "backend"),
                                                 ("services/api/", "services/api"), ("./api", "api")])
def test_subdir_is_a_clean_relative_path(value, expected):
    assert trb.clean_subdir(value) == expected


@pytest.mark.parametrize("value", ["../other", "/abs/backend", "a/../../b"])
def test_subdir_outside_the_source_fails(value):
    with pytest.raises(trb.BuildError, match="app_src_subdir"):
        trb.clean_subdir(value)


# Patterns ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("pattern", "path", "is_dir", "expected"),
    [
        ("*.pyc", "app/sub/x.pyc", False, True),
        ("__pycache__", "app/__pycache__", True, True),
        (".git", ".git", True, True),
        ("/build/", "build", True, True),
        ("/build/", "app/build", True, False),  # anchored: only the root's build/
        ("build/", "build", False, False),  # directories only
        ("docs/*.md", "docs/README.md", False, True),
        ("docs/*.md", "app/docs/README.md", False, False),
        ("app/**/*.css", "app/static/deep/site.css", False, True),
        ("app/**/*.css", "app/site.css", False, True),
        ("*.css", "app/static/site.css", False, True),
        ("images", "app/images", True, True),
    ],
)
def test_exclude_pattern(pattern, path, is_dir, expected):
    assert trb.ExcludePattern(pattern, "test").matches(tuple(path.split("/")), is_dir) is expected


def test_ignore_file_skips_comments_and_blank_lines():
    patterns = trb.parse_ignore_file("# monorepo\n\nmobile/\n  docs  \n*.log # not a comment\n")
    assert [p.text for p in patterns] == ["mobile/", "docs", "*.log # not a comment"]


def test_negated_pattern_fails_naming_the_line():
    with pytest.raises(trb.BuildError, match=r"\.releaseignore line 2: '!keep.txt'"):
        trb.parse_ignore_file("*.txt\n!keep.txt\n")


@pytest.mark.parametrize("pattern", ["../secrets", "", "/"])
def test_unusable_include_fails(pattern):
    with pytest.raises(trb.BuildError, match="build_include"):
        trb.Selector(include=[pattern])


# Selection on a monorepo-shaped tree -------------------------------------------------------------
@pytest.fixture()
def monorepo(tmp_path):
    """tests/fixtures/tsh_backend plus what a developer's checkout holds beside it."""
    root = tmp_path / "tsh-erp"
    shutil.copytree(BACKEND, root)
    for rel in [".git/HEAD", "app/__pycache__/main.cpython-311.pyc", "app/stale.pyc", "build/releases/old.tar.gz",
                "app/build/keep.py", "static/admin/index.html", "static/consumer/index.html", "mobile/build/app.apk"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x\n")
    return root


def selected(root, **kwargs):
    selector = trb.Selector(**kwargs)
    return {rel for rel, kind in trb.select_tree(str(root), selector) if kind == "file"}, selector


def test_include_ships_only_the_backend(monorepo):
    files, selector = selected(monorepo, include=BACKEND_ONLY, exclude=trb.DEFAULT_EXCLUDE,
                               always=["requirements.txt", "static/admin", "static/consumer"])
    assert {f.split("/")[0] for f in files} == {"app", "config", "database", "requirements.txt", "static"}
    assert "database/migrations/0001_initial.sql" in files and "config/settings.py" in files
    assert "static/admin/index.html" in files and "static/consumer/index.html" in files
    assert not any(f.startswith(("mobile/", "docs/", ".git/", "build/")) for f in files)
    assert not any(f.endswith(".pyc") for f in files)
    assert "app/build/keep.py" in files  # only the root's build/ is excluded
    assert selector.unmatched() == []


def test_empty_include_ships_everything_but_the_excludes(monorepo):
    files, _ = selected(monorepo, exclude=trb.DEFAULT_EXCLUDE)
    assert "mobile/pubspec.yaml" in files and "docs/README.md" in files
    assert not any(f.startswith((".git/", "build/")) or f.endswith(".pyc") for f in files)


def test_releaseignore_patterns_apply_with_the_excludes(monorepo):
    ignore = trb.parse_ignore_file("mobile/\ndocs\napp/images/\n*.css\n")
    files, _ = selected(monorepo, exclude=trb.DEFAULT_EXCLUDE, ignore=ignore)
    assert {f.split("/")[0] for f in files} == {"app", "config", "database", "requirements.txt", "static"}
    assert "app/images/placeholder.txt" not in files and "app/static/site.css" not in files
    assert "app/main.py" in files


def test_excludes_win_over_includes(monorepo):
    files, _ = selected(monorepo, include=["app"], exclude=["app/static", "*.txt"])
    assert files == {"app/__init__.py", "app/main.py", "app/stale.pyc", "app/__pycache__/main.cpython-311.pyc",
                     "app/build/keep.py"}


def test_include_globs(monorepo):
    files, _ = selected(monorepo, include=["config/*.py", "database/**/*.sql"])
    assert files == {"config/__init__.py", "config/settings.py", "database/migrations/0001_initial.sql"}


def test_include_that_matches_nothing_is_reported(monorepo):
    _, selector = selected(monorepo, include=["app", "databse"])
    assert selector.unmatched() == ["databse"]


def test_excluded_directories_are_not_walked(monorepo, monkeypatch):
    seen = []
    real_walk = os.walk

    def walk(top, *args, **kwargs):
        for entry in real_walk(top, *args, **kwargs):
            seen.append(os.path.relpath(entry[0], monorepo))
            yield entry

    monkeypatch.setattr(trb.os, "walk", walk)
    selected(monorepo, include=BACKEND_ONLY, exclude=trb.DEFAULT_EXCLUDE)
    assert not any(d.split(os.sep)[0] in ("mobile", "docs", ".git", "build") for d in seen)


def test_links_are_kept_as_links(monorepo, tmp_path):
    (monorepo / "app/current.py").symlink_to("main.py")
    selector = trb.Selector(include=["app"])
    entries = trb.select_tree(str(monorepo), selector)
    assert ("app/current.py", "link") in entries
    dest = tmp_path / "out"
    trb.copy_tree(str(monorepo), entries, str(dest))
    assert os.readlink(dest / "app/current.py") == "main.py"
    assert (dest / "app/main.py").read_bytes() == (monorepo / "app/main.py").read_bytes()


# The build without downloads (check mode) --------------------------------------------------------
def params(**overrides):
    base = {"src": "", "repo": "", "ref": "", "base_dir": None, "subdir": "", "include": [], "exclude": None,
            "ignore_file": ".releaseignore", "always_include": ["static/admin", "static/consumer"],
            "requirements": "requirements.txt", "python_versions": ["3.11"], "host_python_versions": {},
            "platforms": PLATFORMS, "implementation": "cp", "pip_python": None, "pip_options": [],
            "version": "", "faults": {}, "dest": "/nonexistent/release", "artifact_dir": None}
    base.update(overrides)
    return base


def test_check_mode_reports_the_selection_and_writes_nothing(monorepo, tmp_path):
    (monorepo / ".releaseignore").write_text("app/images/\n")
    dest = tmp_path / "release"
    result = trb.build(params(src="tsh-erp", base_dir=str(monorepo.parent), include=BACKEND_ONLY, dest=str(dest),
                              artifact_dir="out", version="1.2.3"), run, check_mode=True)
    assert result["top_level"] == ["app", "config", "database", "requirements.txt", "static"]
    assert result["source"] == str(monorepo)
    assert result["releaseignore"] == ["app/images/"]
    assert result["artifact"] == str(monorepo.parent / "out/tsh_erp-1.2.3.tar.gz")
    assert not dest.exists() and not (monorepo.parent / "out").exists()


def test_subdir_is_the_backend_root(monorepo, tmp_path):
    repo = tmp_path / "big"
    (repo / "flutter").mkdir(parents=True)
    shutil.move(str(monorepo), repo / "backend")
    result = trb.build(params(src=str(repo), subdir="backend", include=BACKEND_ONLY), run, check_mode=True)
    assert result["top_level"] == ["app", "config", "database", "requirements.txt", "static"]
    with pytest.raises(trb.BuildError, match="app_src_subdir 'api' is not a directory"):
        trb.build(params(src=str(repo), subdir="api"), run, check_mode=True)


def test_unmatched_include_fails_the_build(monorepo):
    with pytest.raises(trb.BuildError, match="build_include entries match nothing in .*: databse"):
        trb.build(params(src=str(monorepo), include=["app", "databse"]), run, check_mode=True)


def test_missing_requirements_fails_the_build(monorepo):
    (monorepo / "requirements.txt").unlink()
    with pytest.raises(trb.BuildError, match="no requirements.txt at the backend root"):
        trb.build(params(src=str(monorepo)), run, check_mode=True)


def test_missing_source_names_where_a_relative_path_was_taken_from(tmp_path):
    with pytest.raises(trb.BuildError, match=f"app_src {tmp_path}/nope is not a directory .*taken from {tmp_path}"):
        trb.build(params(src="nope", base_dir=str(tmp_path)), run, check_mode=True)


def test_exactly_one_source():
    with pytest.raises(trb.BuildError, match="Give either -e app_src"):
        trb.build(params(), run, check_mode=True)
    with pytest.raises(trb.BuildError, match="Give either -e app_src"):
        trb.build(params(src="/a", repo="/b", ref="main"), run, check_mode=True)


def git(repo, *args):
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                   env=dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com",
                            GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com"))


def test_git_ref_with_subdir_and_its_releaseignore(monorepo, tmp_path):
    repo = tmp_path / "repo"
    (repo / "flutter_app").mkdir(parents=True)
    (repo / "flutter_app/pubspec.yaml").write_text("name: x\n")
    shutil.rmtree(monorepo / ".git")
    shutil.move(str(monorepo), repo / "backend")
    (repo / "backend/.releaseignore").write_text("# backend\nmobile\ndocs/\n")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "one")
    git(repo, "tag", "v1.4.0")
    (repo / "backend/app/uncommitted.py").write_text("x\n")  # not in the ref: must not ship
    dest = tmp_path / "release"
    result = trb.build(params(repo="repo", ref="v1.4.0", base_dir=str(tmp_path), subdir="backend", dest=str(dest)),
                       run, check_mode=True)
    assert result["version"] == "v1.4.0"  # git describe of the ref
    assert result["source"] == f"{repo}@v1.4.0"
    assert result["releaseignore"] == ["mobile", "docs/"]
    assert "mobile" not in result["top_level"] and "docs" not in result["top_level"]
    assert "app" in result["top_level"] and "flutter_app" not in result["top_level"]
    assert ".releaseignore" not in result["top_level"]
    # The archive's selection, written out.
    selector = trb.Selector(include=["app"], exclude=trb.DEFAULT_EXCLUDE)
    proc = subprocess.Popen(["git", "-C", str(repo), "archive", "--format=tar", "v1.4.0", "--", "backend"],
                            stdout=subprocess.PIPE)
    entries = trb.select_archive(proc.stdout, "backend", selector, str(dest))
    proc.wait()
    assert {rel for rel, kind in entries if kind == "file"} == {
        "app/__init__.py", "app/main.py", "app/images/placeholder.txt", "app/static/site.css", "app/build/keep.py"}
    assert (dest / "app/main.py").read_bytes() == (repo / "backend/app/main.py").read_bytes()
    assert not (dest / "app/uncommitted.py").exists() and not (dest / "app/stale.pyc").exists()


def test_unknown_git_ref_fails(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path / "r")], check=True)
    with pytest.raises(trb.BuildError, match="app_git_ref 'v9' is not a commit, branch or tag"):
        trb.build(params(repo=str(tmp_path / "r"), ref="v9"), run, check_mode=True)


# Version id --------------------------------------------------------------------------------------
def test_version_id():
    now = datetime.datetime(2026, 11, 29, 8, 5, 0, tzinfo=datetime.timezone.utc)
    assert trb.decide_version("2026.11.29-1", "v1.4.0", now) == "2026.11.29-1"
    assert trb.decide_version("", "v1.4.0-3-gabc1234", now) == "v1.4.0-3-gabc1234"
    assert trb.decide_version("", "", now) == "20261129T080500Z"
    with pytest.raises(trb.BuildError, match=r"Version id 'a/b' must be letters, digits"):
        trb.decide_version("a/b", "", now)


# Target Pythons ----------------------------------------------------------------------------------
def test_pythons_from_the_app_hosts_are_unique_and_sorted():
    answers = {"app1": "3.12", "app2": "3.10\n", "app3": "3.12"}
    assert trb.choose_python_versions([], answers) == ["3.10", "3.12"]


def test_explicit_pythons_override_the_hosts():
    assert trb.choose_python_versions(["3.13", "3.11", "3.11"], {"app1": "3.10"}) == ["3.11", "3.13"]
    # -e build_python_versions=[3.11,3.13] arrives as a string Ansible splits at the commas.
    assert trb.choose_python_versions(["[3.11", "3.13]"], {}) == ["3.11", "3.13"]


def test_python_read_as_a_number_fails():
    with pytest.raises(trb.BuildError, match="was read as a number; quote each version"):
        trb.choose_python_versions([3.1], {})
    with pytest.raises(trb.BuildError, match="'3.1' is not a target CPython"):
        trb.choose_python_versions(["3.1"], {})


def test_host_without_an_answer_fails_naming_it():
    with pytest.raises(trb.BuildError, match="App host app2 did not answer"):
        trb.choose_python_versions([], {"app1": "3.10", "app2": ""})
    with pytest.raises(trb.BuildError, match="App host app1 answered 'Python 3.10.12'"):
        trb.choose_python_versions([], {"app1": "Python 3.10.12"})


def test_no_inventory_and_no_list_names_both_ways_out():
    with pytest.raises(trb.BuildError) as error:
        trb.choose_python_versions([], {})
    message = str(error.value)
    assert "-i inventories/production" in message and "build_python_versions" in message
    assert "Ubuntu 22.04: 3.10" in message


def test_probe_order_is_nearest_first():
    assert trb.probe_order("3.13")[:3] == ["3.12", "3.14", "3.11"]
    assert "3.13" not in trb.probe_order("3.13")


# pip's failures ----------------------------------------------------------------------------------
NUMPY_313 = """\
ERROR: Could not find a version that satisfies the requirement numpy==2.0.2 (from versions: 2.1.0, 2.1.1, 2.1.2, 2.1.3, 2.2.0)
ERROR: No matching distribution found for numpy==2.0.2
"""
ANNOTATED_DOC_310 = """\
WARNING: Location 'file:///opt/pypi-more/simple/annotated-doc/' is ignored: it is neither a file nor a directory.
ERROR: Ignored the following versions that require a different python version: 0.0.7 Requires-Python >=3.11
ERROR: Could not find a version that satisfies the requirement annotated-doc==0.0.7 (from versions: 0.0.1, 0.0.2)
ERROR: No matching distribution found for annotated-doc==0.0.7
"""


def test_missing_wheel_message_names_package_version_and_python():
    failure = trb.parse_pip_failure(NUMPY_313)
    assert failure["kind"] == "no-match" and failure["requirement"] == "numpy==2.0.2"
    message = trb.no_wheel_message(failure["requirement"], "3.13", PLATFORMS, failure["versions"])
    assert message.startswith(
        "no wheel of numpy 2.0.2 for CPython 3.13 on manylinux x86_64; pick a version with wheels for 3.13 "
        "or target another Python"
    )
    assert "(versions with wheels for 3.13: 2.1.0, 2.1.1, 2.1.2, 2.1.3, 2.2.0)" in message


def test_requires_python_message():
    failure = trb.parse_pip_failure(ANNOTATED_DOC_310)
    assert failure["requires_python"] == {"0.0.7": ">=3.11"}
    assert trb.excluded_by_requires_python(failure["requirement"], failure["requires_python"]) == ">=3.11"
    assert trb.no_wheel_message(failure["requirement"], "3.10", PLATFORMS, failure["versions"],
                                failure["requires_python"]) == (
        "annotated-doc 0.0.7 does not support CPython 3.10 (Requires-Python >=3.11); "
        "pick a version that supports 3.10 or target another Python.")


def test_other_pip_failures_are_not_read_as_a_missing_wheel():
    assert trb.parse_pip_failure("ERROR: Cannot install a==1 and b==2 because these package versions have "
                                 "conflicting dependencies.")["kind"] == "other"


@pytest.mark.parametrize(("text", "expected"), [
    ("numpy==2.0.2", ("numpy", "", "==2.0.2")),
    ("uvicorn[standard] == 0.30.0", ("uvicorn", "[standard]", "==0.30.0")),
    ("anyio>=4; python_version < '3.11'", ("anyio", "", ">=4")),
    ("click", ("click", "", "")),
])
def test_split_requirement(text, expected):
    assert trb.split_requirement(text) == expected


def test_describe_platforms():
    assert trb.describe_platforms(PLATFORMS) == "manylinux x86_64"
    assert trb.describe_platforms(["manylinux_2_17_aarch64", "musllinux_1_2_x86_64"]) == \
        "manylinux aarch64, musllinux x86_64"


@pytest.mark.parametrize(("name", "pure"), [
    ("tshpure-0.3-py3-none-any.whl", True),
    ("six-1.16.0-py2.py3-none-any.whl", True),
    ("bcrypt-4.0.1-cp311-cp311-linux_x86_64.whl", False),
    ("old-1.0-py2-none-any.whl", False),
    ("x-1.0-py3-abi3-any.whl", False),
])
def test_pure_wheel(name, pure):
    assert trb.is_pure_wheel(name) is pure


def test_requirements_file_lines(tmp_path):
    (tmp_path / "base.txt").write_text("click==8.5.1\n")
    (tmp_path / "requirements.txt").write_text(
        "# pinned\n-r base.txt\n--index-url https://example.invalid/simple\n"
        "uvicorn[standard]==0.54.0 \\\n    --hash=sha256:abc\nexceptiongroup==1.3.0; python_version < '3.11'  # 3.10\n")
    assert trb.read_requirements(str(tmp_path / "requirements.txt")) == [
        "click==8.5.1", "uvicorn[standard]==0.54.0", "exceptiongroup==1.3.0; python_version < '3.11'"]


# The module's documentation ----------------------------------------------------------------------
def test_module_documentation_matches_its_argument_spec():
    """DOCUMENTATION, EXAMPLES and RETURN parse, and each option's type, elements, default and
    required are the argument spec's (module_utils', which the module and its action plugin share)."""
    import ast

    import yaml

    source = (REPO / "plugins/modules/tsh_release_build.py").read_text()
    tree = ast.parse(source)
    values = {n.targets[0].id: n.value for n in tree.body if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name)}
    docs = {name: yaml.safe_load(ast.literal_eval(values[name])) for name in ("DOCUMENTATION", "EXAMPLES", "RETURN")}
    spec = trb.ARGUMENT_SPEC
    options = docs["DOCUMENTATION"]["options"]
    assert set(options) == set(spec)
    for name, arg in spec.items():
        for key in ("type", "elements", "default"):
            assert options[name].get(key) == arg.get(key), (name, key)
        assert bool(options[name].get("required")) == bool(arg.get("required")), name
    assert docs["EXAMPLES"][0]["tsh_release_build"]["include"] == BACKEND_ONLY
