"""Unit tests for tsh_config_files: the module's set of changes tested as a whole and put back when
the test fails (plugins/module_utils/tsh_config_files.py, against real files), and the action
plugin's one-file-per-element expansion (plugins/action/tsh_config_files.py)."""

import importlib.util
import os
import pathlib

import pytest
from ansible.errors import AnsibleActionFail

_ROOT = pathlib.Path(__file__).resolve().parents[2]


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, _ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cf = _load("tsh_config_files", "plugins/module_utils/tsh_config_files.py")
action = _load("tsh_config_files_action", "plugins/action/tsh_config_files.py")
ME = (os.getuid(), os.getgid())


class Validator:
    """A validate command: passes unless told to fail; records what the files held when it ran."""

    def __init__(self, rc=0, err=""):
        self.rc, self.err, self.seen = rc, err, []

    def __call__(self, argv):
        self.seen.append(argv)
        return self.rc, "", self.err


@pytest.fixture()
def etc(tmp_path):
    (tmp_path / "sites").mkdir()
    (tmp_path / "nginx.conf").write_text("old main\n")
    (tmp_path / "sites/000-default.conf").write_text("old default\n")
    (tmp_path / "sites/stale.conf").write_text("stale\n")
    (tmp_path / "sites/default").write_text("distribution default\n")
    return tmp_path


def files(etc):
    return [{"dest": str(etc / "nginx.conf"), "content": "new main\n"},
            {"dest": str(etc / "sites/000-default.conf"), "content": "old default\n"},
            {"dest": str(etc / "sites/erp.conf"), "content": "erp\n", "mode": "0640"}]


def apply(etc, test, **kwargs):
    return cf.apply(files(etc), run=test,
                    directories=[{"path": str(etc / "upstreams"), "uid": ME[0], "gid": ME[1]}],
                    links=[{"path": str(etc / "upstreams/active.conf"), "src": "blue.conf"}],
                    prune=[{"path": str(etc / "sites")}], validate=["nginx", "-t"], service="nginx",
                    uid=ME[0], gid=ME[1], **kwargs)


def test_writes_only_what_differs_prunes_and_tests_the_whole(etc):
    test = Validator()
    result = apply(etc, test)
    assert result["changed"]
    assert result["paths"] == [str(etc / "upstreams"), str(etc / "nginx.conf"), str(etc / "sites/erp.conf"),
                               str(etc / "upstreams/active.conf"), str(etc / "sites/default"),
                               str(etc / "sites/stale.conf")]
    assert (etc / "nginx.conf").read_text() == "new main\n"
    assert oct((etc / "sites/erp.conf").stat().st_mode & 0o777) == "0o640"
    assert os.readlink(etc / "upstreams/active.conf") == "blue.conf"
    assert sorted(os.listdir(etc / "sites")) == ["000-default.conf", "erp.conf"]
    assert not (etc / ".sites.pruned").exists()
    assert test.seen == [["nginx", "-t"]]


def test_a_second_run_changes_nothing_and_leaves_a_moved_link_alone(etc):
    apply(etc, Validator())
    os.remove(etc / "upstreams/active.conf")
    os.symlink("green.conf", etc / "upstreams/active.conf")
    result = apply(etc, Validator())
    assert not result["changed"] and result["paths"] == []
    assert os.readlink(etc / "upstreams/active.conf") == "green.conf"


def test_a_failed_test_puts_everything_back(etc):
    before = {p.name: p.read_text() for p in (etc / "sites").iterdir()} | {"main": (etc / "nginx.conf").read_text()}
    with pytest.raises(cf.ConfigError, match=r'nginx rejected the new configuration, so it was not applied: .*'
                                             r'nginx -t said: nginx: \[emerg\] unknown directive "x"'):
        apply(etc, Validator(rc=1, err='nginx: [emerg] unknown directive "x"\n'))
    after = {p.name: p.read_text() for p in (etc / "sites").iterdir()} | {"main": (etc / "nginx.conf").read_text()}
    assert after == before
    assert not (etc / "upstreams/active.conf").exists() and not (etc / ".sites.pruned").exists()


def test_check_mode_reports_and_touches_nothing(etc):
    test = Validator()
    result = apply(etc, test, check=True)
    assert result["changed"] and str(etc / "sites/stale.conf") in result["paths"]
    assert (etc / "nginx.conf").read_text() == "old main\n" and (etc / "sites/stale.conf").exists()
    assert not (etc / "upstreams").exists() and test.seen == []
    diff = {d["before_header"]: d for d in result["diff"]}
    assert diff[str(etc / "nginx.conf")]["before"] == "old main\n"
    assert diff[str(etc / "nginx.conf")]["after"] == "new main\n"


def test_what_a_killed_run_held_aside_is_removed(etc):
    (etc / ".sites.pruned").mkdir()
    (etc / ".sites.pruned/old.conf").write_text("held\n")
    apply(etc, Validator())
    assert not (etc / ".sites.pruned").exists()


def test_a_directory_where_a_file_goes_is_refused_before_any_change(etc):
    (etc / "sites/erp.conf").mkdir()
    with pytest.raises(cf.ConfigError, match="erp.conf must be a regular file"):
        apply(etc, Validator())
    assert (etc / "nginx.conf").read_text() == "old main\n"
    assert (etc / "sites/stale.conf").exists()


def test_the_same_file_twice_is_refused():
    with pytest.raises(cf.ConfigError, match="the same file is given twice"):
        cf.apply([{"dest": "/x", "content": "a"}, {"dest": "/x", "content": "b"}])


def test_each_expands_to_one_file_per_element():
    sites = [{"name": "erp", "kind": "api"}, {"name": "shop", "kind": "static"}]
    assert action.expand([
        {"src": "nginx.conf.j2", "dest": "/etc/nginx/nginx.conf"},
        {"src": "site.conf.j2", "dest": "/s/%s.conf", "each": sites, "as": "__site", "key": "name"},
        {"src": "up.j2", "dest": "/u/tsh_%s.conf", "each": ["blue"], "vars": {"x": 1}},
    ]) == [
        {"src": "nginx.conf.j2", "dest": "/etc/nginx/nginx.conf"},
        {"src": "site.conf.j2", "dest": "/s/erp.conf", "vars": {"__site": sites[0]}},
        {"src": "site.conf.j2", "dest": "/s/shop.conf", "vars": {"__site": sites[1]}},
        {"src": "up.j2", "dest": "/u/tsh_blue.conf", "vars": {"x": 1, "item": "blue"}},
    ]


def test_each_can_name_the_template_too():
    assert action.expand([{"src": "%s.j2", "dest": "/etc/systemd/system/%s", "each": ["a.service", "a.timer"]}]) == [
        {"src": "a.service.j2", "dest": "/etc/systemd/system/a.service", "vars": {"item": "a.service"}},
        {"src": "a.timer.j2", "dest": "/etc/systemd/system/a.timer", "vars": {"item": "a.timer"}},
    ]


def test_each_needs_a_placeholder_and_distinct_names():
    with pytest.raises(AnsibleActionFail, match="needs a %s"):
        action.expand([{"src": "a", "dest": "/s/site.conf", "each": [1]}])
    with pytest.raises(AnsibleActionFail, match="more than one file would be written to /s/erp.conf"):
        action.expand([{"src": "a", "dest": "/s/%s.conf", "each": [{"name": "erp"}, {"name": "erp"}], "key": "name"}])


def test_a_file_failing_its_own_test_is_not_written_and_nothing_stays(etc):
    def bash_n(argv):
        assert argv[:2] == ["bash", "-n"] and os.path.basename(argv[2]).startswith(".")
        text = pathlib.Path(argv[2]).read_text()
        return (2, "", f"{argv[2]}: syntax error near unexpected token `fi'") if "fi fi" in text else (0, "", "")
    good = {"dest": str(etc / "a.sh"), "content": "echo a\n", "mode": "0755", "validate": "bash -n %s"}
    bad = {"dest": str(etc / "b.sh"), "content": "if true; then :; fi fi\n", "validate": "bash -n %s"}
    with pytest.raises(cf.ConfigError, match=r"b.sh was not written: `bash -n %s` rejected it: .*syntax error"):
        cf.apply([good, bad], run=bash_n, uid=ME[0], gid=ME[1])
    assert sorted(p.name for p in etc.iterdir()) == ["nginx.conf", "sites"]
    assert cf.apply([good], run=bash_n, uid=ME[0], gid=ME[1])["paths"] == [str(etc / "a.sh")]
    with pytest.raises(cf.ConfigError, match="must name the file as %s"):
        cf.apply([{**good, "content": "echo b\n", "validate": "bash -n"}], run=bash_n, uid=ME[0], gid=ME[1])
    assert (etc / "a.sh").read_text() == "echo a\n"


def test_lines_set_keys_in_a_file_the_distribution_owns(tmp_path):
    defs = tmp_path / "login.defs"
    defs.write_text("# PASS_MAX_DAYS is read by useradd\nPASS_MAX_DAYS\t99999\n#SHA_CRYPT_MIN_ROUNDS 5000\nUMASK 022\n")
    defs.chmod(0o640)
    item = {"dest": str(defs), "lines": [
        {"regexp": r"^#?\s*PASS_MAX_DAYS\s", "line": "PASS_MAX_DAYS\t365"},
        {"regexp": r"^#?\s*SHA_CRYPT_MIN_ROUNDS\s", "line": "SHA_CRYPT_MIN_ROUNDS\t65536"},
        {"regexp": r"^#?\s*SHA_CRYPT_MAX_ROUNDS\s", "line": "SHA_CRYPT_MAX_ROUNDS\t65536"}]}
    first = cf.apply([item], uid=ME[0], gid=ME[1])
    assert first["changed"]
    # The last matching line is the one replaced; a key with no line is appended; the mode stays.
    assert defs.read_text() == ("# PASS_MAX_DAYS is read by useradd\nPASS_MAX_DAYS\t365\n"
                                "SHA_CRYPT_MIN_ROUNDS\t65536\nUMASK 022\nSHA_CRYPT_MAX_ROUNDS\t65536\n")
    assert defs.stat().st_mode & 0o777 == 0o640
    assert not cf.apply([item], uid=ME[0], gid=ME[1])["changed"]


def test_lines_in_a_missing_file_are_refused(tmp_path):
    with pytest.raises(cf.ConfigError, match="install that first"):
        cf.apply([{"dest": str(tmp_path / "absent"), "lines": [{"regexp": "^A=", "line": "A=1"}]}])
    assert not (tmp_path / "absent").exists()


def test_lines_are_put_back_when_the_whole_fails_its_test(tmp_path):
    conf = tmp_path / "debsums"
    conf.write_text("CRON_CHECK=never\n")
    with pytest.raises(cf.ConfigError, match="rejected"):
        cf.apply([{"dest": str(conf), "lines": [{"regexp": "^#?CRON_CHECK=", "line": "CRON_CHECK=weekly"}]}],
                 run=Validator(rc=1, err="bad"), validate=["check"], uid=ME[0], gid=ME[1])
    assert conf.read_text() == "CRON_CHECK=never\n"


def test_a_line_can_be_put_first_when_nothing_matches(tmp_path):
    sshd = tmp_path / "sshd_config"
    sshd.write_text("Port 22\n")
    include = {"regexp": r"^Include\s+/etc/ssh/sshd_config\.d/\*\.conf", "line": "Include /etc/ssh/sshd_config.d/*.conf",
               "at": "start"}
    cf.apply([{"dest": str(sshd), "lines": [include]}], uid=ME[0], gid=ME[1])
    assert sshd.read_text() == "Include /etc/ssh/sshd_config.d/*.conf\nPort 22\n"
    assert not cf.apply([{"dest": str(sshd), "lines": [include]}], uid=ME[0], gid=ME[1])["changed"]


def test_a_link_to_a_directory_is_left_as_it_is(tmp_path):
    """A static root that a deploy turned into a link to a release: a re-run of the role changes nothing
    (site.yml after a deploy used to stop here: 'must be a directory but is something else')."""
    release = tmp_path / "releases" / "v1" / "admin"
    release.mkdir(parents=True)
    release.chmod(0o750)
    root = tmp_path / "admin"
    root.symlink_to(release)
    result = cf.apply([], directories=[{"path": str(root), "mode": "0755", "uid": ME[0], "gid": ME[1]}],
                      uid=ME[0], gid=ME[1])
    assert not result["changed"]
    assert root.is_symlink() and release.stat().st_mode & 0o777 == 0o750
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(cf.ConfigError, match="must be a directory"):
        cf.apply([], directories=[{"path": str(tmp_path / "dangling")}], uid=ME[0], gid=ME[1])


@pytest.mark.skipif(os.getuid() != 0, reason="chown to another user needs root")
def test_a_file_can_have_its_own_owner(tmp_path):
    """The call's files belong to the call's owner; an item's uid and gid win for that file (a root
    script among a service user's configuration files)."""
    items = [{"dest": str(tmp_path / "a.conf"), "content": "a\n"},
             {"dest": str(tmp_path / "check"), "content": "#!/bin/sh\n", "mode": "0755", "uid": 0, "gid": 0}]
    assert cf.apply(items, uid=65534, gid=65534)["changed"]
    assert ((tmp_path / "a.conf").stat().st_uid, (tmp_path / "check").stat().st_uid) == (65534, 0)
    assert not cf.apply(items, uid=65534, gid=65534)["changed"]
