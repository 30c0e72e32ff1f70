"""Unit tests for plugins/module_utils/tsh_switch.py: the nginx switch and the repair of an
interrupted one, against real link files and a fake nginx (run/ask), plus the probe against a local
HTTPS server."""

import http.server
import importlib.util
import json
import os
import pathlib
import ssl
import subprocess
import threading

import pytest

_PATH = pathlib.Path(__file__).resolve().parents[2] / "plugins/module_utils/tsh_switch.py"
_SPEC = importlib.util.spec_from_file_location("tsh_switch", _PATH)
ts = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(ts)


class FakeNginx:
    """nginx as the module sees it: `nginx -t` reads the link, reload loads it; ask() answers with
    the loaded colour. Faults: test_fails, reload_fails, routes_to (what a reload really loads)."""

    def __init__(self, link, loaded="", healthy=("blue", "green"), version="v1"):
        self.link, self.loaded, self.healthy, self.version = link, loaded, set(healthy), version
        self.test_fails = self.reload_fails = False
        self.routes_to = None
        self.calls = []
        self.enabled = []
        self.enable_fails = False

    def run(self, argv):
        self.calls.append(argv[-1])
        if argv[:2] == ["systemctl", "enable"]:
            self.enabled.append(argv[-1])
            return (1, "", "Failed to enable unit: Unit file tsh_erp-x.service does not exist.") \
                if self.enable_fails else (0, "", "")
        if argv[-1] == "-t":
            return (1, "", "nginx: [emerg] unexpected end of file") if self.test_fails else (0, "", "syntax is ok")
        if self.reload_fails:
            return 1, "", "Job for nginx.service failed"
        self.loaded = self.routes_to or ts.link_colour(self.link)
        return 0, "", ""

    def ask(self):
        if self.loaded in self.healthy:
            return 200, self.loaded, json.dumps({"status": "healthy", "version": self.version})
        return 503, self.loaded or None, '{"status": "maintenance"}'


def setup(tmp_path, colour="blue", loaded=None):
    upstreams = tmp_path / "upstreams"
    upstreams.mkdir()
    for c in ts.COLOURS:
        (upstreams / f"tsh_erp_{c}.conf").write_text(f"upstream tsh_erp {{ server 127.0.0.1:{c}; }}\n")
    link = str(upstreams / "tsh_erp_active.conf")
    if colour:
        os.symlink(f"tsh_erp_{colour}.conf", link)
    nginx = FakeNginx(link, colour if loaded is None else loaded)
    switcher = ts.Switcher(link, str(tmp_path / "switch.json"), nginx.run, nginx.ask, confirm_timeout=0,
                           sleep=lambda _s: None)
    return switcher, nginx


# The switch ------------------------------------------------------------------------------------
def test_switch_moves_the_link_reloads_and_confirms(tmp_path):
    switcher, nginx = setup(tmp_path)
    result = switcher.switch("green", "blue", "v1", "version")
    assert result["changed"] and (result["from"], result["to"]) == ("blue", "green")
    assert ts.link_colour(switcher.link) == "green" and nginx.loaded == "green"
    assert nginx.calls == ["-t", "nginx"]
    assert not os.path.exists(switcher.intent_path)


def test_failed_nginx_test_puts_the_link_back_without_a_reload(tmp_path):
    switcher, nginx = setup(tmp_path)
    nginx.test_fails = True
    with pytest.raises(ts.SwitchError, match=r"^nginx -t failed after the switch; the link points at blue again "
                                             r"and nginx was not reloaded.*unexpected end of file"):
        switcher.switch("green", "blue", "v1")
    assert ts.link_colour(switcher.link) == "blue" and nginx.loaded == "blue" and nginx.calls == ["-t"]
    assert not os.path.exists(switcher.intent_path)


def test_failed_reload_puts_the_link_back(tmp_path):
    switcher, nginx = setup(tmp_path)
    nginx.reload_fails = True
    with pytest.raises(ts.SwitchError, match=r"^Reloading nginx failed after the switch \(Job for nginx.service "
                                             r"failed\); the link points at blue again\. Putting it back failed too"):
        switcher.switch("green", "blue", "v1")
    assert ts.link_colour(switcher.link) == "blue" and nginx.loaded == "blue"


def test_unconfirmed_switch_is_switched_back(tmp_path):
    switcher, nginx = setup(tmp_path)
    nginx.healthy = {"blue"}  # green passed its gate, then fell over
    with pytest.raises(ts.SwitchError, match=r"^Smoke check through nginx did not see v2 on green after the switch "
                                             r".*it said green, status 503\); traffic was switched back to blue\."):
        switcher.switch("green", "blue", "v2")
    assert ts.link_colour(switcher.link) == "blue" and nginx.loaded == "blue"
    assert nginx.calls == ["-t", "nginx", "-t", "nginx"]


def test_wrong_release_behind_the_right_colour_is_not_confirmed(tmp_path):
    switcher, nginx = setup(tmp_path)
    nginx.version = "v0"
    with pytest.raises(ts.SwitchError, match="did not see v1 on green"):
        switcher.switch("green", "blue", "v1", "version")
    # Without a version field the colour and a good status are enough.
    assert switcher.switch("green", "blue", "v1")["changed"]


def test_link_moved_by_someone_else_is_refused_untouched(tmp_path):
    switcher, nginx = setup(tmp_path, colour="green")
    with pytest.raises(ts.SwitchError, match="^The link names green, not blue as when this run started"):
        switcher.switch("blue", "blue", "v1")
    assert ts.link_colour(switcher.link) == "green" and nginx.calls == []


def test_check_mode_changes_nothing(tmp_path):
    switcher, nginx = setup(tmp_path)
    assert switcher.switch("green", "blue", "v1", check_mode=True) == {"changed": True, "from": "blue", "to": "green"}
    assert ts.link_colour(switcher.link) == "blue" and nginx.calls == [] and not os.path.exists(switcher.intent_path)


def test_first_switch_onto_the_initial_colour_reloads_and_confirms(tmp_path):
    """Before the first deploy the nginx role links blue, which does not answer yet."""
    switcher, nginx = setup(tmp_path, loaded="blue")
    nginx.healthy = set()
    with pytest.raises(ts.SwitchError, match="switched back to blue"):
        switcher.switch("blue", "blue", "v1")
    nginx.healthy = {"blue"}
    assert switcher.switch("blue", "blue", "v1", "version")["to"] == "blue"


# A kill at each instant of a switch, then reconcile ---------------------------------------------
class Killed(Exception):
    pass


@pytest.mark.parametrize("kill_at, serving", [
    ("after_intent", "blue"),       # intent written, link untouched
    ("after_link", "blue"),         # link swapped, nginx not reloaded: the case the old deploy got wrong
    ("after_test", "blue"),         # nginx -t passed, no reload yet
    ("after_reload", "green"),      # reloaded, not confirmed
])
def test_a_kill_anywhere_leaves_a_state_reconcile_repairs(tmp_path, monkeypatch, kill_at, serving):
    switcher, nginx = setup(tmp_path)
    real_point, real_run = ts.point_link, nginx.run

    def point_then_die(link, colour, name="tsh_erp"):
        real_point(link, colour, name)
        if kill_at == "after_link":
            raise Killed

    def run_then_die(argv):
        rc = real_run(argv)
        if (kill_at, argv[-1]) in (("after_test", "-t"), ("after_reload", "nginx")):
            raise Killed
        return rc

    if kill_at == "after_intent":
        monkeypatch.setattr(ts, "point_link", lambda *a, **k: (_ for _ in ()).throw(Killed()))
    else:
        monkeypatch.setattr(ts, "point_link", point_then_die)
    switcher.run = run_then_die
    with pytest.raises(Killed):
        switcher.switch("green", "blue", "v2")
    monkeypatch.setattr(ts, "point_link", real_point)
    assert nginx.loaded == serving and json.loads(pathlib.Path(switcher.intent_path).read_text())["to"] == "green"

    result = switcher.reconcile()
    assert result["link"] == serving == ts.link_colour(switcher.link) == nginx.loaded
    assert result["changed"] and "interrupted" in result["message"]
    assert not os.path.exists(switcher.intent_path)
    # Repaired: a second reconcile finds nothing, and the next switch starts from what serves.
    assert switcher.reconcile() == {"changed": False, "link": serving, "routed": serving, "intent": None,
                                    "message": ""}


def test_reconcile_without_intent_follows_nginx_not_the_link(tmp_path):
    switcher, nginx = setup(tmp_path, colour="green", loaded="blue")
    result = switcher.reconcile()
    assert result["changed"] and ts.link_colour(switcher.link) == "blue"
    assert result["message"].startswith("The link named green but nginx serves blue")


def test_reconcile_in_check_mode_reports_and_changes_nothing(tmp_path):
    switcher, _nginx = setup(tmp_path, colour="green", loaded="blue")
    assert switcher.reconcile(check_mode=True)["changed"] and ts.link_colour(switcher.link) == "green"


def test_reconcile_refuses_when_nginx_does_not_answer(tmp_path):
    switcher, _nginx = setup(tmp_path, colour="green", loaded="blue")
    switcher.ask = lambda: (_ for _ in ()).throw(ConnectionRefusedError(111, "Connection refused"))
    with pytest.raises(ts.SwitchError, match=r"^nginx does not answer on this host \(no answer: .*Connection refused\)"):
        switcher.reconcile()
    assert ts.link_colour(switcher.link) == "green"


def test_plan_when_nginx_does_not_say_which_colour():
    assert ts.plan_reconcile("blue", None, None)["link"] == "blue"
    assert "trusting the link" in ts.plan_reconcile("blue", None, None)["message"]
    plan = ts.plan_reconcile("green", None, {"from": "blue", "to": "green", "version": "v2"})
    assert plan["link"] == "blue" and plan["clear_intent"]


def test_plan_refuses_a_third_state():
    with pytest.raises(ts.SwitchError, match="nginx serves green, neither of them"):
        ts.plan_reconcile("blue", "green", {"from": "blue", "to": "blue", "version": "v1"})


def test_torn_or_foreign_intent_is_refused_by_name(tmp_path):
    path = tmp_path / "switch.json"
    path.write_text('{"from": "bl')
    with pytest.raises(ts.SwitchError, match=f"The switch record {path} is not what a switch writes"):
        ts.read_intent(str(path))


def test_bad_links_are_refused_by_name(tmp_path):
    link = tmp_path / "tsh_erp_active.conf"
    link.write_text("not a link")
    with pytest.raises(ts.SwitchError, match="is not a symlink"):
        ts.link_colour(str(link))
    link.unlink()
    os.symlink("/etc/passwd", link)
    with pytest.raises(ts.SwitchError, match="points at /etc/passwd"):
        ts.link_colour(str(link))
    assert ts.link_colour(str(tmp_path / "missing")) == ""


# The probe against a real HTTPS server with SNI ---------------------------------------------------
def test_probe_sends_the_api_name_and_reads_the_colour(tmp_path):
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-days", "1", "-subj", "/CN=erp.test", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    seen = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            seen["host"], seen["path"] = self.headers["Host"], self.path
            body = b'{"status": "healthy", "version": "v9"}'
            self.send_response(200)
            self.send_header("X-TSH-Color", "green")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    def sni(_sock, name, _ctx):
        seen["sni"] = name  # returns None: go on with the handshake

    context.sni_callback = sni
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        status, colour, body = ts.probe("erp.test", "/health", port=server.server_address[1], timeout=5)
    finally:
        server.shutdown()
    assert (status, colour, seen) == (200, "green", {"sni": "erp.test", "host": "erp.test", "path": "/health"})
    assert ts.smoke_verdict(status, colour, body, "green", "v9", "version")
    assert not ts.smoke_verdict(status, colour, body, "blue", "v9", "version")


def test_switch_enables_the_new_colour_at_boot_before_traffic_moves(tmp_path):
    switcher, nginx = setup(tmp_path, "blue")
    switcher.switch("green", "blue", "v1", enable_unit="tsh_erp-green")
    assert nginx.enabled == ["tsh_erp-green"]
    assert nginx.calls == ["tsh_erp-green", "-t", "nginx"]  # enable, then nginx -t, then the reload
    assert nginx.loaded == "green"


def test_switch_refused_when_boot_cannot_take_the_new_colour(tmp_path):
    switcher, nginx = setup(tmp_path, "blue")
    nginx.enable_fails = True
    with pytest.raises(ts.SwitchError, match="Enabling tsh_erp-green at boot failed before the switch"):
        switcher.switch("green", "blue", "v1", enable_unit="tsh_erp-green")
    assert ts.link_colour(switcher.link) == "blue" and nginx.loaded == "blue"
    assert ts.read_intent(switcher.intent_path) is None


def test_switch_without_enable_unit_touches_no_unit(tmp_path):
    switcher, nginx = setup(tmp_path, "blue")
    switcher.switch("green", "blue", "v1")
    assert nginx.enabled == []


def test_switch_then_follows_traffic_before_the_record_is_removed(tmp_path):
    switcher, nginx = setup(tmp_path, "blue")
    seen = []

    def then():
        seen.append((nginx.loaded, ts.read_intent(switcher.intent_path)["to"]))
        return ["admin"]

    result = switcher.switch("green", "blue", "v1", then=then)
    assert seen == [("green", "green")] and result["followed"] == ["admin"]
    assert ts.read_intent(switcher.intent_path) is None


def test_switch_then_failing_switches_traffic_back(tmp_path):
    switcher, nginx = setup(tmp_path, "blue")

    def then():
        raise ts.SwitchError("Linking the static frontends failed (disk full); they point where they did")

    with pytest.raises(ts.SwitchError, match="they point where they did; traffic was switched back to blue"):
        switcher.switch("green", "blue", "v1", then=then)
    assert ts.link_colour(switcher.link) == "blue" and nginx.loaded == "blue"
    assert ts.read_intent(switcher.intent_path) is None


def test_confirm_asks_again_soon_while_old_workers_answer(tmp_path):
    """After a reload nginx's old workers may answer first: the confirm asks again every 0.2 s."""
    upstreams = tmp_path / "upstreams"
    upstreams.mkdir()
    for c in ts.COLOURS:
        (upstreams / f"tsh_erp_{c}.conf").write_text("upstream tsh_erp {}\n")
    link = str(upstreams / "tsh_erp_active.conf")
    os.symlink("tsh_erp_blue.conf", link)
    nginx = FakeNginx(link, "blue")
    answers = iter([(200, "blue", "{}"), (200, "blue", "{}")])
    now, slept = [0.0], []

    def ask():
        return next(answers, None) or nginx.ask()

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    switcher = ts.Switcher(link, str(tmp_path / "switch.json"), nginx.run, ask, confirm_timeout=10,
                           clock=lambda: now[0], sleep=sleep)
    switcher.switch("green", "blue", "v1")
    assert slept == [0.2, 0.2]
