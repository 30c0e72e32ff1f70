"""Switching nginx between the blue and green upstreams, and repairing a switch a kill interrupted.

Used by plugins/modules/tsh_switch.py on the web host. The active link
(/etc/nginx/upstreams/tsh_erp_active.conf) says what nginx serves after its next reload; nginx itself
says what it serves now: every upstream file maps loopback clients to an X-TSH-Color response header
naming its colour, so a request from the host to the API vhost reads nginx's loaded choice.

A switch writes its intent first (a JSON file, renamed into place), swaps the link (a new link renamed
over the old one), runs `nginx -t`, reloads, and confirms through nginx that the new colour answers;
on any failure it puts the old link back (and reloads again when it had reloaded). Only then is the
intent removed. A kill at any line leaves nginx serving the old or the new colour, and the intent
file says which switch was under way: reconcile() then makes the link agree with what nginx serves,
so a later reload (a certificate renewal) cannot move traffic without a gate.

Needs no Ansible: tests/unit/test_switch.py imports it by path.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import time

COLOURS = ("blue", "green")
HEADER = "X-TSH-Color"


class SwitchError(Exception):
    """A switch or repair that cannot go on; the message says what happened and what to do."""


# ---------------------------------------------------------------------------------------------
# Files: the link and the intent


def link_colour(link, name="tsh_erp"):
    """The colour the active link names, '' when there is no link."""
    if not os.path.lexists(link):
        return ""
    if not os.path.islink(link):
        raise SwitchError(f"{link} is not a symlink; it must point at {name}_blue.conf or {name}_green.conf. "
                          f"Fix it by hand (ln -sfn {name}_blue.conf {link}), then run again.")
    target = os.readlink(link)
    for colour in COLOURS:
        if target in (f"{name}_{colour}.conf", os.path.join(os.path.dirname(link), f"{name}_{colour}.conf")):
            return colour
    raise SwitchError(f"{link} points at {target}; it must point at {name}_blue.conf or {name}_green.conf. "
                      f"Fix it by hand, then run again.")


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def point_link(link, colour, name="tsh_erp"):
    """Point the link at colour's upstream file atomically ('' removes it). Never reloads nginx."""
    directory = os.path.dirname(link)
    if not colour:
        if os.path.lexists(link):
            os.unlink(link)
            _fsync_dir(directory)
        return
    if colour not in COLOURS:
        raise SwitchError(f"Colour '{colour}' is not blue or green.")
    new = os.path.join(directory, "." + os.path.basename(link) + ".new")
    if os.path.lexists(new):
        os.unlink(new)
    os.symlink(f"{name}_{colour}.conf", new)
    os.replace(new, link)
    _fsync_dir(directory)


def read_intent(path):
    """The switch under way ({'from', 'to', 'version', 'started'}), None when there is none."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return None
    try:
        intent = json.loads(text)
    except ValueError:
        intent = None
    if not isinstance(intent, dict) or not {"from", "to"} <= set(intent):
        raise SwitchError(f"The switch record {path} is not what a switch writes ({text[:200]!r}). Compare the "
                          f"link with what nginx serves (playbooks/status.yml), remove the file, run again.")
    return intent


def write_intent(path, intent):
    os.makedirs(os.path.dirname(path), mode=0o750, exist_ok=True)
    new = path + ".new"
    with open(new, "w", encoding="utf-8") as f:
        json.dump(intent, f, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.chmod(new, 0o640)
    os.replace(new, path)
    _fsync_dir(os.path.dirname(path))


def clear_intent(path):
    if os.path.lexists(path):
        os.unlink(path)
        _fsync_dir(os.path.dirname(path))


# ---------------------------------------------------------------------------------------------
# Asking nginx


class _SNIConnection(http.client.HTTPSConnection):
    """HTTPS to an address with another name in SNI (nginx picks the vhost by it)."""

    def __init__(self, sni, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._sni = sni

    def connect(self):
        http.client.HTTPConnection.connect(self)
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self._sni)


def probe(api_host, path, address="127.0.0.1", port=443, timeout=5.0):
    """Ask nginx on this host for the API's path: (status, routed colour or None, body text).
    The colour is None when nginx sends no X-TSH-Color (a configuration from before the header)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # nginx on loopback; the certificate is checked elsewhere
    conn = _SNIConnection(api_host, address, port, timeout=timeout, context=context)
    try:
        conn.request("GET", path, headers={"Host": api_host, "Connection": "close"})
        response = conn.getresponse()
        body = response.read(65536).decode("utf-8", "replace")
        colour = (response.getheader(HEADER) or "").strip()
        return response.status, (colour if colour else None), body
    finally:
        conn.close()


def field(body, dotted):
    """The value at a dotted path of a JSON body, '' when absent or not JSON."""
    try:
        value = json.loads(body)
    except ValueError:
        return ""
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            return ""
        value = value[key]
    return value


# ---------------------------------------------------------------------------------------------
# Decisions


def plan_reconcile(link, routed, intent):
    """What to do before a deploy or rollback, from the link's colour, the colour nginx routes to
    (None when nginx does not say) and the intent of an interrupted switch. Returns
    {'link': colour the link must name, 'clear_intent': bool, 'message': what was found ('' when all agree)}."""
    if intent:
        moving = f"a switch from {intent['from'] or 'nothing'} to {intent['to']} ({intent.get('version') or '?'})"
        if routed is None:
            return {"link": intent["from"], "clear_intent": True,
                    "message": f"Found {moving} interrupted, and nginx does not say which colour it serves (no "
                               f"{HEADER}: run site.yml to update nginx): the link names {intent['from'] or 'nothing'} "
                               f"again, the colour that served before it."}
        if routed == intent["to"]:
            return {"link": routed, "clear_intent": True,
                    "message": f"Found {moving} interrupted after nginx reloaded: it had taken effect, nginx serves "
                               f"{routed}; the link names {routed}."}
        if routed == intent["from"]:
            return {"link": routed, "clear_intent": True,
                    "message": f"Found {moving} interrupted before nginx reloaded (the link named {link or 'nothing'}, "
                               f"nginx serves {routed}): the link names {routed} again; traffic did not move."}
        raise SwitchError(f"Found {moving} interrupted, but nginx serves {routed}, neither of them. Check "
                          f"playbooks/status.yml and the colours' units, then point the link at the colour that "
                          f"should serve, reload nginx and remove the switch record.")
    if routed is None or routed == link:
        return {"link": link, "clear_intent": False,
                "message": "" if routed is not None else
                f"nginx does not say which colour it serves (no {HEADER}: run site.yml to update nginx); "
                f"trusting the link ({link or 'nothing'})."}
    return {"link": routed, "clear_intent": False,
            "message": f"The link named {link or 'nothing'} but nginx serves {routed} (the link changed without a "
                       f"reload): the link names {routed} again; traffic did not move."}


def smoke_verdict(status, routed, body, to, version, version_field):
    """Whether an answer through nginx shows the switch took: nginx routes to `to`, and the release
    id is `version` when the app reports one (version_field)."""
    if routed != to:
        return False
    if version_field:
        return str(field(body, version_field)) == str(version)
    return status < 500


# ---------------------------------------------------------------------------------------------
# Acting


class Switcher:
    """The switch and the repair on one web host. run(argv) -> (rc, stdout, stderr) and
    ask() -> (status, colour, body) are injected so the unit tests need no nginx."""

    def __init__(self, link, intent_path, run, ask, name="tsh_erp", nginx_test=("nginx", "-t"),
                 nginx_reload=("systemctl", "reload", "nginx"), confirm_timeout=10.0, confirm_interval=0.2,
                 clock=time.monotonic, sleep=time.sleep):
        self.link, self.intent_path, self.run, self.ask, self.name = link, intent_path, run, ask, name
        self.nginx_test, self.nginx_reload = list(nginx_test), list(nginx_reload)
        self.confirm_timeout, self.confirm_interval = confirm_timeout, confirm_interval
        self.clock, self.sleep = clock, sleep

    def _ask(self):
        try:
            return self.ask()
        except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
            return None, None, f"no answer: {exc}"

    def reconcile(self, check_mode=False):
        link = link_colour(self.link, self.name)
        intent = read_intent(self.intent_path)
        status, routed, body = self._ask()
        if status is None:
            raise SwitchError(f"nginx does not answer on this host ({body}). Start it (systemctl status nginx, "
                              f"nginx -t) and run again; nothing was changed.")
        plan = plan_reconcile(link, routed, intent)
        changed = plan["link"] != link or (plan["clear_intent"] and intent is not None)
        if changed and not check_mode:
            if plan["link"] != link:
                point_link(self.link, plan["link"], self.name)
            if plan["clear_intent"]:
                clear_intent(self.intent_path)
        return {"changed": changed, "link": plan["link"], "routed": routed, "intent": intent,
                "message": plan["message"]}

    def _nginx(self, argv):
        rc, out, err = self.run(argv)
        return rc, (err or out).strip()

    def _put_back(self, previous, reload):
        point_link(self.link, previous, self.name)
        if reload:
            rc, said = self._nginx(self.nginx_test)
            if rc == 0:
                rc, said = self._nginx(self.nginx_reload)
            if rc != 0:
                return f" Putting it back failed too: {said}"
        return ""

    def _confirm(self, to, version, version_field):
        deadline = self.clock() + self.confirm_timeout
        while True:
            last = self._ask()
            if last[0] is not None and smoke_verdict(*last, to, version, version_field):
                return True, last
            if self.clock() >= deadline:
                return False, last
            # nginx's old workers may answer the first requests after a reload: ask again soon.
            self.sleep(self.confirm_interval)

    def switch(self, to, expected_from, version, version_field="", check_mode=False, enable_unit="", then=None):
        """Move traffic to `to`. enable_unit: the new colour's unit on this host, enabled at boot before
        traffic moves (a kill after the reload must not leave the serving colour off at boot). then: a
        step that follows traffic (the static frontends), called once nginx routes to `to`; it returns
        what it did, or raises SwitchError having undone its own changes, and traffic is switched back."""
        if to not in COLOURS:
            raise SwitchError(f"Colour '{to}' is not blue or green.")
        current = link_colour(self.link, self.name)
        if current != expected_from:
            raise SwitchError(f"The link names {current or 'nothing'}, not {expected_from or 'nothing'} as when "
                              f"this run started: something else switched traffic. Nothing was switched by this run.")
        if check_mode:
            return {"changed": current != to, "from": current, "to": to}
        if enable_unit:
            rc, said = self._nginx(["systemctl", "enable", "--quiet", "--", enable_unit])
            if rc != 0:
                raise SwitchError(f"Enabling {enable_unit} at boot failed before the switch ({said}); traffic did "
                                  f"not move.")
        write_intent(self.intent_path, {"from": current, "to": to, "version": version,
                                        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        point_link(self.link, to, self.name)
        rc, said = self._nginx(self.nginx_test)
        if rc != 0:
            point_link(self.link, current, self.name)
            clear_intent(self.intent_path)
            raise SwitchError(f"nginx -t failed after the switch; the link points at {current or 'nothing'} again "
                              f"and nginx was not reloaded, so traffic did not move. nginx said: {said}")
        rc, said = self._nginx(self.nginx_reload)
        if rc != 0:
            extra = self._put_back(current, reload=True)
            clear_intent(self.intent_path)
            raise SwitchError(f"Reloading nginx failed after the switch ({said}); the link points at "
                              f"{current or 'nothing'} again.{extra}")
        ok, (status, routed, body) = self._confirm(to, version, version_field)
        if not ok:
            extra = self._put_back(current, reload=True)
            clear_intent(self.intent_path)
            raise SwitchError(f"Smoke check through nginx did not see {version} on {to} after the switch (nginx "
                              f"names the colour it routes to in {HEADER}; it said {routed or 'nothing'}, status "
                              f"{status}); traffic was switched back to {current or 'nothing'}.{extra} "
                              f"Last answer: {body[:500]}")
        followed = None
        if then is not None:
            try:
                followed = then()
            except SwitchError as exc:
                extra = self._put_back(current, reload=True)
                clear_intent(self.intent_path)
                raise SwitchError(f"{exc}; traffic was switched back to {current or 'nothing'}.{extra}") from exc
        clear_intent(self.intent_path)
        return {"changed": True, "from": current, "to": to, "status": status, "answer": body[:500],
                "followed": followed}
