"""Unit tests for plugins/module_utils/tsh_status.py and plugins/filter/tsh_status.py: gathering from
real files and a fake systemctl/nginx, the warnings' thresholds, the table with every part missing,
days left, and the JSON form."""

import importlib.util
import json
import os
import pathlib
import sys
import time

import pytest

_ROOT = pathlib.Path(__file__).resolve().parents[2]


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, _ROOT / path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# tsh_status imports tsh_switch by its name in the collection (tests/conftest.py puts the checkout's
# collections/ on sys.path).
_UTILS = "ansible_collections.tsh.infra.plugins.module_utils"
ts = _load(f"{_UTILS}.tsh_switch", "plugins/module_utils/tsh_switch.py")
st = _load(f"{_UTILS}.tsh_status", "plugins/module_utils/tsh_status.py")
flt = _load("tsh_status_filter", "plugins/filter/tsh_status.py")

NOW = 1_800_000_000  # 2027-01-15 08:00 UTC
DAY = 86400


class FakeSystemd:
    """systemctl show for the two colour units: states given per colour."""

    def __init__(self, **states):
        self.states = states  # colour -> (ActiveState, UnitFileState, entered monotonic s)

    def run(self, argv):
        if argv[0] == "systemctl":
            colour = argv[-1].rsplit("-", 1)[1]
            active, enabled, entered = self.states.get(colour, ("inactive", "disabled", 0))
            return 0, (f"LoadState=loaded\nActiveState={active}\nUnitFileState={enabled}\n"
                       f"ActiveEnterTimestampMonotonic={int(entered * 1e6)}\n"), ""
        raise AssertionError(argv)


def _statvfs(free_percent):
    class St:
        f_frsize = 4096
        f_blocks = 10_000_000
        f_bfree = int(10_000_000 * free_percent / 100)
        f_bavail = int(10_000_000 * free_percent / 100)
    return lambda _path: St()


def app_report(tmp_path, systemd, releases=None, deploys=(), free_percent=60.0, health=None, host="h"):
    base = tmp_path / host / "opt"
    (base / "deploy").mkdir(parents=True)
    for colour, release in (releases or {}).items():
        (base / "releases" / release).mkdir(parents=True, exist_ok=True)
        os.symlink(f"releases/{release}", base / f"current-{colour}")
    log = base / "deploy/audit.log"
    if deploys:
        log.write_text("".join(json.dumps(d) + "\n" for d in deploys) + "not json\n")

    def ask(port):
        code, status = (health or {}).get(port, (200, "healthy"))
        return code, json.dumps({"status": status})

    return st.gather_app(str(base), {"blue": 8001, "green": 8002}, systemd.run, ask, str(log), 5,
                         mono_now=10_000, statvfs=_statvfs(free_percent))


def web_report(tmp_path, link="blue", routed="blue", lock=None, cert_days=80, nginx_up=True):
    up = tmp_path / "upstreams"
    up.mkdir(exist_ok=True)
    active = up / "tsh_erp_active.conf"
    if link:
        os.symlink(f"tsh_erp_{link}.conf", active)
    lock_dir = tmp_path / "lock"
    if lock is not None:
        lock_dir.mkdir()
        if lock:
            (lock_dir / "holder.json").write_text(json.dumps(lock))
    cert = tmp_path / "fullchain.pem"
    if cert_days is not None:
        cert.write_text("PEM")
    not_after = time.strftime("%b %d %H:%M:%S %Y GMT", time.gmtime(NOW + cert_days * DAY + 3600)) if cert_days is not None else ""

    def run(argv):
        assert argv[:2] == ["openssl", "x509"]
        return 0, f"notAfter={not_after}\n", ""

    def ask_nginx():
        if not nginx_up:
            raise ConnectionRefusedError(111, "Connection refused")
        return 200, routed, "{}"

    return st.gather_web(str(active), str(tmp_path / "switch.json"), ask_nginx, str(lock_dir), 1800, str(cert),
                         run, NOW)


def db_report(tmp_path, age_h=3.0, files=("tsh_erp_x.dump", "globals_x.sql"), free_percent=60.0):
    status = tmp_path / "backup.json"
    backups = tmp_path / "backups"
    backups.mkdir(exist_ok=True)
    if age_h is not None:
        for name in files:
            (backups / name).write_bytes(b"x" * 1024)
        status.write_text(json.dumps({"unit": "backup", "result": "success", "last_success": "2027-01-15T05:00:00Z",
                                      "last_success_epoch": NOW - int(age_h * 3600), "stamp": "x", "label": "",
                                      "files": list(files)}))
    return st.gather_db(str(status), str(backups), NOW, statvfs=_statvfs(free_percent))


def one_droplet(app, web, db, host="tsh-prod-1"):
    return {host: {"parts": ["app", "web", "db"], "web_host": host, "backup_host": host, "audit_lines": 5,
                   "app": app, "web": web, "db": db}}


HEALTHY = {"blue": ("active", "enabled", 10_000 - 7500), "green": ("inactive", "disabled", 0)}
DEPLOYS = [{"time": f"2027-01-1{i}T10:00:00Z", "operation": "deploy", "version": f"v{i}", "from_color": "green",
            "to_color": "blue", "outcome": "success", "total_s": 61, "who": "ci@runner"} for i in range(7)]


def healthy(tmp_path, **changes):
    app = app_report(tmp_path, FakeSystemd(**changes.pop("systemd", HEALTHY)), {"blue": "v6", "green": "v5"},
                     DEPLOYS, free_percent=changes.pop("free_percent", 60.0))
    web = web_report(tmp_path, cert_days=changes.pop("cert_days", 80), lock=changes.pop("lock", None),
                     routed=changes.pop("routed", "blue"))
    db = db_report(tmp_path, age_h=changes.pop("age_h", 3.0))
    assert not changes
    return one_droplet(app, web, db)


# Days left ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("seconds, days", [(80 * DAY + 3600, 80), (DAY - 1, 0), (0, 0), (-1, -1), (-DAY, -1),
                                           (-DAY - 1, -2), (21 * DAY, 21)])
def test_days_left_counts_whole_days_and_goes_negative_once_expired(seconds, days):
    assert st.days_left(NOW + seconds, NOW) == days


def test_certificate_expiry_read_from_openssl(tmp_path):
    cert = web_report(tmp_path, cert_days=30)["certificate"]
    assert cert["days_left"] == 30
    assert cert["not_after"] == time.strftime("%Y-%m-%d", time.gmtime(NOW + 30 * DAY + 3600))


# A healthy stack --------------------------------------------------------------------------------
def test_healthy_stack_has_no_warnings_and_its_table(tmp_path):
    full = flt.tsh_status(healthy(tmp_path))
    assert full["warnings"] == [] and full["unreachable"] == []
    lines = flt.tsh_status_table(full)
    text = "\n".join(lines)
    assert lines[0] == "TSH ERP on tsh-prod-1"
    assert lines[1] == "Serving             blue  release v6  (link blue, nginx routes to blue)"
    assert lines[2].split() == ["Colours", "colour", "unit", "boot", "release", "health", "uptime"]
    assert lines[3].split() == ["blue", "*", "active", "enabled", "v6", "200", "healthy", "2h", "05m"]
    assert lines[4].split() == ["green", "inactive", "disabled", "v5", "-", "-"]
    assert "Lock                none" in lines
    deploys = [line for line in lines if "deploy  v" in line]
    assert len(deploys) == 5 and "v6" in deploys[0] and "v2" in deploys[-1]
    assert deploys[0].endswith("2027-01-16 10:00:00Z  deploy  v6  green -> blue  success  61 s  ci@runner")
    assert f"Certificate         expires {full['cells'][0]['certificate']['not_after']} (80 days left)" in lines
    assert "Last backup         3h 00m ago (2027-01-15T05:00:00Z), 2 files, 2.0 KB" in lines
    assert f"Backups kept        0 dumps, 2.0 KB in all; 22.9 GB free on {tmp_path}/backups" in lines
    assert "Free disk           60.0 % free (24.6 GB of 41.0 GB) on " in text
    assert lines[-1] == "Warnings            none"
    assert all('"' not in line and line == line.rstrip() for line in lines)


def test_json_form_holds_the_same_facts(tmp_path):
    full = flt.tsh_status(healthy(tmp_path))
    again = json.loads(json.dumps(full))
    cell = again["cells"][0]
    assert cell["serving"] == {"colour": "blue", "release": "v6", "link": "blue", "routed": "blue"}
    assert cell["app"]["tsh-prod-1"]["colours"]["green"]["release"] == "v5"
    assert cell["app"]["tsh-prod-1"]["colours"]["blue"]["health"]["code"] == 200
    assert cell["lock"] is None and cell["warnings"] == [] and again["warnings"] == []
    assert [d["version"] for d in cell["deploys"]] == ["v2", "v3", "v4", "v5", "v6"]
    assert cell["certificate"]["days_left"] == 80 and cell["backup"]["size_bytes"] == 2048
    assert cell["app"]["tsh-prod-1"]["disk"]["free_percent"] == 60.0


# Every part missing -------------------------------------------------------------------------------
def test_nothing_deployed_no_backup_no_certificate_nginx_down(tmp_path):
    app = app_report(tmp_path, FakeSystemd())
    web = web_report(tmp_path, link=None, cert_days=None, nginx_up=False)
    db = db_report(tmp_path, age_h=None)
    full = flt.tsh_status(one_droplet(app, web, db))
    lines = flt.tsh_status_table(full)
    assert lines[1] == "Serving             none"
    assert lines[3].split() == ["blue", "inactive", "disabled", "none", "-", "-"]
    assert "Lock                none" in lines and "Last deploys        none" in lines
    assert "Certificate         none" in lines and "Last backup         never" in lines
    warned = full["warnings"]
    assert warned[0].startswith("nginx does not answer: ") and "Connection refused" in warned[0]
    assert "No colour serves yet (no active link): deploy a release." in warned
    assert "No certificate yet (run site.yml; acme_sh issues it)." in warned
    assert "No backup yet (tsh-backup.timer runs daily; systemctl start tsh-backup)." in warned
    assert lines[-len(warned):][0] == "Warnings            " + warned[0]


def test_only_app_hosts_answered(tmp_path):
    """The web and db hosts unreachable: their parts read unknown, and it says so."""
    app = app_report(tmp_path, FakeSystemd(**HEALTHY), {"blue": "v1"})
    reports = {"app1": {"parts": ["app"], "web_host": "web", "backup_host": "db", "app": app}}
    full = flt.tsh_status(reports, ["web", "db"])
    lines = flt.tsh_status_table(full)
    assert lines[0] == "TSH ERP on web (app: app1; db: db)"
    assert "Serving             unknown (web host not reached)" in lines
    assert "Lock                unknown" in lines and "Last backup         unknown" in lines
    assert full["warnings"][:2] == ["Host db was not reached.", "Host web was not reached."]
    assert any(w.startswith("The web host web was not reached") for w in full["warnings"])
    assert lines[-1] == "Host web was not reached."


def test_no_host_answered():
    assert flt.tsh_status_table(flt.tsh_status({}, ["a"])) == ["No app host answered: nothing to report.",
                                                               "Host a was not reached."]


# Warnings and their thresholds -------------------------------------------------------------------------
@pytest.mark.parametrize("days, warned", [(21, False), (20, True), (0, True), (-3, True)])
def test_certificate_warning_under_the_threshold(tmp_path, days, warned):
    full = flt.tsh_status(healthy(tmp_path, cert_days=days))
    assert any("days left, under 21" in w for w in full["warnings"]) == warned, full["warnings"]


@pytest.mark.parametrize("age_h, warned", [(25.9, False), (26.1, True), (100, True)])
def test_backup_warning_over_the_threshold(tmp_path, age_h, warned):
    full = flt.tsh_status(healthy(tmp_path, age_h=age_h))
    assert any("over 26 h" in w for w in full["warnings"]) == warned, full["warnings"]


@pytest.mark.parametrize("free, warned", [(15.0, False), (14.9, True), (2.0, True)])
def test_disk_warning_under_the_threshold(tmp_path, free, warned):
    full = flt.tsh_status(healthy(tmp_path, free_percent=free))
    assert any("% free, under 15 %" in w for w in full["warnings"]) == warned, full["warnings"]


def test_thresholds_are_settings(tmp_path):
    """What the playbook passes (status_* variables, possibly strings from the command line)."""
    limits = {"cert_min_days": "90", "backup_max_age_h": "1", "disk_min_free_percent": "70"}
    warned = flt.tsh_status(healthy(tmp_path), [], limits)["warnings"]
    assert len(warned) == 3, warned
    assert any("under 90)" in w for w in warned)
    assert any("over 1 h" in w for w in warned) and any("under 70 %" in w for w in warned)


def test_serving_colour_not_enabled_at_boot(tmp_path):
    states = dict(HEALTHY, blue=("active", "disabled", 100))
    full = flt.tsh_status(healthy(tmp_path, systemd=states))
    assert full["warnings"] == ["The serving colour blue is not enabled at boot (disabled): systemctl enable "
                                "tsh_erp-blue, or run deploy/rollback."]


def test_serving_colour_stopped_or_unhealthy(tmp_path):
    stopped = flt.tsh_status(healthy(tmp_path / "a", systemd=dict(HEALTHY, blue=("failed", "enabled", 0))))
    assert stopped["warnings"] == ["The serving colour blue is failed."]
    app = app_report(tmp_path / "b", FakeSystemd(**HEALTHY), {"blue": "v1"}, health={8001: (503, "failing")})
    full = flt.tsh_status(one_droplet(app, web_report(tmp_path / "b"), db_report(tmp_path / "b")))
    assert full["warnings"] == ["The serving colour blue does not answer its health check: status 503 failing."]
    assert "503 failing" in "\n".join(flt.tsh_status_table(full))


def test_link_and_nginx_disagree(tmp_path):
    """The link changed without a reload: what the next deploy's reconcile (tsh_switch) will repair."""
    full = flt.tsh_status(healthy(tmp_path, routed="green"))
    cell = full["cells"][0]
    assert cell["serving"]["colour"] == "green"
    assert full["warnings"][0] == ("Link and nginx disagree: The link named blue but nginx serves green (the link "
                                   "changed without a reload): the link names green again; traffic did not move.")
    assert flt.tsh_status_table(full)[1] == "Serving             green  release v5  (link blue, nginx routes to green)"


def test_interrupted_switch_is_shown(tmp_path):
    reports = healthy(tmp_path)
    (tmp_path / "switch.json").write_text(json.dumps({"from": "blue", "to": "green", "version": "v7"}))
    reports["tsh-prod-1"]["web"] = st.nginx_view(str(tmp_path / "upstreams/tsh_erp_active.conf"),
                                                 str(tmp_path / "switch.json"), lambda: (200, "blue", "{}"))
    reports["tsh-prod-1"]["web"].update(lock=None, certificate=reports["tsh-prod-1"]["web"].get("certificate"))
    full = flt.tsh_status(reports)
    assert "interrupted before nginx reloaded" in full["warnings"][0]
    assert any(line.startswith("Switch under way    {") for line in flt.tsh_status_table(full))


# The lock ------------------------------------------------------------------------------------------
def test_lock_held_with_extra_keys_and_without_its_token(tmp_path):
    holder = {"holder": "ci@runner", "version": "v7", "operation": "deploy", "started": "2027-01-15T07:50:00Z",
              "started_epoch": NOW - 600, "token": "secret123", "controller": {"host": "runner", "pid": 42}}
    full = flt.tsh_status(healthy(tmp_path, lock=holder))
    lock = full["cells"][0]["lock"]
    assert lock["state"] == "held" and lock["age_s"] == 600 and not lock["stale"]
    assert "token" not in lock and lock["controller"] == {"host": "runner", "pid": 42}
    assert "Lock                held by ci@runner: deploy v7, 10m ago" in flt.tsh_status_table(full)
    assert full["warnings"] == []
    assert "secret123" not in json.dumps(full)


def test_stale_lock_warns(tmp_path):
    holder = {"holder": "ci@runner", "version": "v7", "operation": "rollback", "started_epoch": NOW - 7200}
    full = flt.tsh_status(healthy(tmp_path, lock=holder))
    assert "held by ci@runner: rollback v7, 2h 00m ago (STALE)" in "\n".join(flt.tsh_status_table(full))
    assert full["warnings"][0].startswith("The deploy lock is stale (2h 00m old)")


def test_lock_without_holder_file_is_being_taken(tmp_path):
    lock = st.read_lock(str(_lock_dir(tmp_path)), time.time(), 1800)
    assert lock["state"] == "being taken" and lock["age_s"] <= 1 and not lock["stale"]
    assert st.read_lock(str(tmp_path / "none"), NOW, 1800) is None


def _lock_dir(tmp_path):
    path = tmp_path / "lock"
    path.mkdir()
    return path


# Several app hosts behind one web host ----------------------------------------------------------------
def test_multi_host_merges_deploys_and_warns_per_host(tmp_path):
    app1 = app_report(tmp_path, FakeSystemd(**HEALTHY), {"blue": "v6"}, DEPLOYS, host="app1")
    app2 = app_report(tmp_path, FakeSystemd(**dict(HEALTHY, blue=("active", "disabled", 100))), {"blue": "v6"},
                      DEPLOYS[-3:], free_percent=5, host="app2")
    reports = {
        "app1": {"parts": ["app"], "web_host": "web", "backup_host": "db", "audit_lines": 5, "app": app1},
        "app2": {"parts": ["app"], "web_host": "web", "backup_host": "db", "audit_lines": 5, "app": app2},
        "web": {"parts": ["web"], "web": web_report(tmp_path)},
        "db": {"parts": ["db"], "db": db_report(tmp_path)},
    }
    full = flt.tsh_status(reports)
    cell = full["cells"][0]
    assert (cell["web_host"], cell["db_host"], list(cell["app"])) == ("web", "db", ["app1", "app2"])
    assert [d["version"] for d in cell["deploys"]] == ["v2", "v3", "v4", "v5", "v6"]
    assert full["warnings"] == [
        "The serving colour blue is not enabled at boot on app2 (disabled): systemctl enable tsh_erp-blue, or run "
        "deploy/rollback.",
        f"Disk {app2['disk']['path']} on app2 has 5.0 % free, under 15 %."]
    lines = flt.tsh_status_table(full)
    assert lines[0] == "TSH ERP on web (app: app1, app2; db: db)"
    assert lines[2].split()[1:] == ["host", "colour", "unit", "boot", "release", "health", "uptime"]
    assert lines[3].split()[:3] == ["app1", "blue", "*"] and lines[5].split()[:3] == ["app2", "blue", "*"]


def test_two_droplets_in_one_inventory_get_a_block_each(tmp_path):
    one = healthy(tmp_path / "one")
    two = {"tsh-prod-2": dict(healthy(tmp_path / "two", cert_days=3)["tsh-prod-1"], web_host="tsh-prod-2",
                              backup_host="tsh-prod-2")}
    full = flt.tsh_status({**one, **two})
    assert [c["web_host"] for c in full["cells"]] == ["tsh-prod-1", "tsh-prod-2"]
    assert len(full["warnings"]) == 1 and full["warnings"][0].startswith("tsh-prod-2: The certificate expires")
    lines = flt.tsh_status_table(full)
    assert "TSH ERP on tsh-prod-1 (app: tsh-prod-1; db: tsh-prod-1)" in lines
    assert "TSH ERP on tsh-prod-2 (app: tsh-prod-2; db: tsh-prod-2)" in lines and lines[-1] != ""


# Reading the host -----------------------------------------------------------------------------------------
def test_unit_state_of_a_unit_that_does_not_exist():
    def run(_argv):
        return 0, "LoadState=not-found\nActiveState=inactive\nUnitFileState=\nActiveEnterTimestampMonotonic=0\n", ""
    assert st.unit_state(run, "tsh_erp-blue", 100) == {"unit": "tsh_erp-blue", "active": "inactive",
                                                       "enabled": "not-found", "uptime_s": None}


def test_health_of_a_colour_that_does_not_answer():
    def ask():
        raise ConnectionRefusedError(111, "Connection refused")
    assert st.health_of(ask)["error"].startswith("no answer: ")
    assert st.health_of(lambda: (200, "not json")) == {"code": 200, "status": "", "version": ""}


def test_audit_log_tail_skips_broken_lines(tmp_path):
    log = tmp_path / "audit.log"
    log.write_text("".join(json.dumps(d) + "\n" for d in DEPLOYS) + "{broken\n")
    assert [r["version"] for r in st.read_audit(str(log), 3)] == ["v4", "v5", "v6"]
    assert st.read_audit(str(tmp_path / "none.log"), 5) == []


def test_audit_log_tail_of_a_long_log_reads_only_its_end(tmp_path):
    log = tmp_path / "audit.log"
    records = [dict(DEPLOYS[0], version=f"r{i}", reason="x" * 900) for i in range(200)]
    log.write_text("".join(json.dumps(d) + "\n" for d in records))
    assert [r["version"] for r in st.read_audit(str(log), 5)] == [f"r{i}" for i in range(195, 200)]
    assert st.read_audit(str(log), 0) == []


def test_certificate_date_as_openssl_pads_it():
    """openssl pads the day with a space (notAfter=Mar  2 12:00:00 2027 GMT)."""
    def run(_argv):
        return 0, "notAfter=Mar  2 12:00:00 2027 GMT\n", ""
    cert = st.read_certificate(__file__, run, NOW)
    assert cert["not_after"] == "2027-03-02" and cert["days_left"] == 46


def test_unreadable_backup_status_is_reported(tmp_path):
    (tmp_path / "backup.json").write_text("{half")
    report = st.gather_db(str(tmp_path / "backup.json"), str(tmp_path), NOW)
    assert report["backup"]["error"].endswith("is not JSON ('{half')")


def test_backups_kept_counts_the_dumps_and_warns_before_the_disk_refuses(tmp_path):
    """The table counts the dumps in the directory; with less free space than the last backup's size
    plus backups_min_free_mb the warning says the next backup will refuse to start."""
    names = ("tsh_erp_20270115T050000Z.dump", "globals_20270115T050000Z.sql",
             "tsh_erp_20270114T050000Z-pre-deploy-v5.dump", "tsh_erp_20270114T050000Z.dump.sha256")
    app = app_report(tmp_path, FakeSystemd(**HEALTHY), {"blue": "v6", "green": "v5"}, DEPLOYS)
    web = web_report(tmp_path)
    roomy = flt.tsh_status(one_droplet(app, web, db_report(tmp_path, files=names)))
    assert "Backups kept        2 dumps, 4.0 KB in all; 22.9 GB free on " in "\n".join(flt.tsh_status_table(roomy))
    assert roomy["warnings"] == []
    # 0.01 % of 41 GB is 3.9 MB: under 4 KB + 1024 MB, over 4 KB + 1 MB.
    full = one_droplet(app, web, db_report(tmp_path, files=names, free_percent=0.01))
    (warning,) = flt.tsh_status(full)["warnings"]
    assert warning.startswith("The next backup will refuse to start: 3.9 MB free on ")
    assert "under the last backup's 4.0 KB plus 1024 MB (backups_min_free_mb)" in warning
    assert flt.tsh_status(full, (), {"backup_min_free_mb": "1"})["warnings"] == []


def test_an_unlistable_backup_directory_is_said(tmp_path):
    report = db_report(tmp_path)
    kept = st.backups_kept(str(tmp_path / "absent"), statvfs=_statvfs(50.0))
    assert kept["error"].startswith(f"cannot list {tmp_path}/absent: ")
    assert report["backup"]["kept"]["dumps"] == 0


def test_backup_files_gone_are_named(tmp_path):
    report = db_report(tmp_path)
    os.unlink(tmp_path / "backups/globals_x.sql")
    report = st.gather_db(str(tmp_path / "backup.json"), str(tmp_path / "backups"), NOW)
    assert report["backup"]["missing_files"] == ["globals_x.sql"] and report["backup"]["size_bytes"] == 1024


@pytest.mark.parametrize("seconds, text", [(None, "-"), (5, "5s"), (600, "10m"), (3 * 3600 + 300, "3h 05m"),
                                           (2 * DAY + 4 * 3600, "2d 04h")])
def test_duration(seconds, text):
    assert st.duration(seconds) == text


def test_disk_of_a_path_not_made_yet(tmp_path):
    disk = st.disk_free(str(tmp_path / "not/yet"))
    assert disk["path"].endswith("not/yet") and 0 < disk["free_percent"] <= 100
