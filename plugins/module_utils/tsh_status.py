"""The TSH ERP status at a glance: gather each host's part, merge the parts, warn, render.

Used on the hosts by plugins/modules/tsh_status.py (gather_app, gather_web, gather_db: one round trip
per host) and on the controller by plugins/filter/tsh_status.py (merge, warnings, render_table). Every
reader of the host is injected (run(argv) -> (rc, out, err), the HTTP askers, the clocks, statvfs), so
tests/unit/test_status.py needs no host. Nothing here fails because a part is missing (a colour never
deployed, no backup yet, no certificate, nginx down): the part reads None or carries an "error", and
warnings() says what it means.

The web host's view of the link and of nginx comes from tsh_switch (link_colour, read_intent, the
X-TSH-Color probe, plan_reconcile): status reports exactly what the next deploy's reconcile would find.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import re
import ssl
import time

from ansible_collections.tsh.infra.plugins.module_utils.tsh_switch import (
    COLOURS, SwitchError, link_colour, plan_reconcile, read_intent,
)

# The thresholds of warnings(); playbooks/status.yml passes status_* variables (roles/deploy/defaults).
THRESHOLDS = {"cert_min_days": 21, "backup_max_age_h": 26, "disk_min_free_percent": 15, "backup_min_free_mb": 1024}


# ---------------------------------------------------------------------------------------------
# Small pure helpers


def days_left(not_after_epoch, now):
    """Whole days from now until not_after (negative once expired; 0 on the last day)."""
    return math.floor((not_after_epoch - now) / 86400)


def duration(seconds):
    """A short human duration: 45s, 12m, 3h 05m, 2d 04h."""
    if seconds is None:
        return "-"
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600:02d}h"


def size(nbytes):
    """Bytes as B, KB, MB or GB (powers of 1024, one decimal)."""
    value = float(nbytes)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def utc(epoch):
    """An epoch as 2026-12-02 14:05 UTC."""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(epoch))


def _read_json(path):
    """(value, error): (None, None) when the file does not exist."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"cannot read {path}: {exc.strerror or exc}"
    try:
        return json.loads(text), None
    except ValueError:
        return None, f"{path} is not JSON ({text[:80]!r})"


# ---------------------------------------------------------------------------------------------
# Gathering on an app host: the colours, the audit log, the disk


def unit_state(run, unit, mono_now):
    """systemd's view of a unit: active state, boot state (enabled, disabled, ...), uptime in s."""
    rc, out, err = run(["systemctl", "show", "--property=LoadState,ActiveState,UnitFileState,"
                        "ActiveEnterTimestampMonotonic", "--", unit])
    if rc != 0:
        return {"unit": unit, "active": "unknown", "enabled": "unknown", "uptime_s": None,
                "error": (err or out).strip()[:300]}
    props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    loaded = props.get("LoadState", "")
    active = props.get("ActiveState", "") or "unknown"
    enabled = props.get("UnitFileState", "") or ("not-found" if loaded == "not-found" else "unknown")
    try:
        entered = int(props.get("ActiveEnterTimestampMonotonic", "0")) / 1e6
    except ValueError:
        entered = 0
    uptime = int(mono_now - entered) if active == "active" and entered > 0 else None
    return {"unit": unit, "active": active, "enabled": enabled, "uptime_s": uptime}


def release_of(link):
    """The release a current-<colour> link names, None when the colour was never deployed."""
    try:
        return os.path.basename(os.readlink(link).rstrip("/")) or None
    except OSError:
        return None


def ask_http(address, port, path, timeout):
    """GET http://address:port/path: (status, body text)."""
    conn = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        return response.status, response.read(65536).decode("utf-8", "replace")
    finally:
        conn.close()


def health_of(ask):
    """The answer of a colour's health path: {'code', 'status', 'version'} or {'error'}."""
    try:
        code, body = ask()
    except (OSError, http.client.HTTPException) as exc:
        return {"code": None, "error": f"no answer: {exc}"}
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        data = {}
    return {"code": code, "status": str(data.get("status", "")), "version": str(data.get("version", ""))}


def _tail(path, lines, block=16384):
    """The last `lines` lines of a file, read from its end (the audit log grows for years)."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        position = f.tell()
        data = b""
        while position > 0 and data.count(b"\n") <= lines:
            step = min(block, position)
            position -= step
            f.seek(position)
            data = f.read(step) + data
    return data.decode("utf-8", "replace").splitlines()[-lines:]


def read_audit(path, lines):
    """The last `lines` records of the deploy audit log (one JSON object a line; others skipped)."""
    if lines <= 0:
        return []
    try:
        tail = _tail(path, lines * 2)
    except FileNotFoundError:
        return []
    except OSError as exc:
        return [{"error": f"cannot read {path}: {exc.strerror or exc}"}]
    records = []
    for line in tail:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records[-lines:]


def disk_free(path, statvfs=os.statvfs):
    """Free space of the filesystem holding path (or its nearest existing parent), as df counts it."""
    probe_path = path
    while not os.path.exists(probe_path) and os.path.dirname(probe_path) != probe_path:
        probe_path = os.path.dirname(probe_path)
    try:
        st = statvfs(probe_path)
    except OSError as exc:
        return {"path": path, "error": f"statvfs {probe_path}: {exc.strerror or exc}"}
    usable = (st.f_blocks - st.f_bfree + st.f_bavail) * st.f_frsize
    free = st.f_bavail * st.f_frsize
    return {"path": path, "free_bytes": free, "total_bytes": st.f_blocks * st.f_frsize,
            "free_percent": round(100.0 * free / usable, 1) if usable else 0.0}


def gather_app(base_dir, ports, run, ask_colour, audit_log, audit_lines, mono_now, statvfs=os.statvfs,
               unit_prefix="tsh_erp"):
    """An app host's part. ask_colour(port) -> (status, body) asks a colour's health path."""
    colours = {}
    for colour in COLOURS:
        state = unit_state(run, f"{unit_prefix}-{colour}", mono_now)
        state["port"] = int(ports[colour])
        state["release"] = release_of(os.path.join(base_dir, f"current-{colour}"))
        state["health"] = (health_of(lambda port=state["port"]: ask_colour(port)) if state["active"] == "active"
                           else None)
        colours[colour] = state
    return {"colours": colours, "deploys": read_audit(audit_log, audit_lines),
            "disk": disk_free(base_dir, statvfs)}


# ---------------------------------------------------------------------------------------------
# Gathering on the web host: the link and nginx, the deploy lock, the certificate


def read_lock(lock_dir, now, ttl):
    """The deploy lock: None when free; a directory without holder.json is a lock being taken."""
    try:
        taken = os.stat(lock_dir).st_mtime
    except FileNotFoundError:
        return None
    except OSError as exc:
        return {"state": "unreadable", "error": f"cannot read {lock_dir}: {exc.strerror or exc}"}
    record, error = _read_json(os.path.join(lock_dir, "holder.json"))
    if record is None and error is None:
        age = int(now - taken)
        return {"state": "being taken", "age_s": age, "stale": age > ttl}
    if not isinstance(record, dict):
        age = int(now - taken)
        return {"state": "unreadable", "error": error or "holder.json is not a JSON object", "age_s": age,
                "stale": age > ttl}
    try:
        started = float(record.get("started_epoch"))
    except (TypeError, ValueError):
        started = taken
    # The token proves ownership to lock_release; it stays on the host.
    lock = {key: value for key, value in record.items() if key != "token"}
    age = int(now - started)
    lock.update(state="held", age_s=age, stale=age > ttl)
    return lock


def read_certificate(path, run, now):
    """The certificate's expiry: None when there is none; days_left counted from the host's clock."""
    if not os.path.exists(path):
        return None
    rc, out, err = run(["openssl", "x509", "-noout", "-enddate", "-in", path])
    text = out.strip()
    if rc != 0 or not text.startswith("notAfter="):
        return {"path": path, "error": f"openssl cannot read {path}: {(err or out).strip()[:200]}"}
    try:
        not_after = ssl.cert_time_to_seconds(text.split("=", 1)[1].strip())
    except ValueError as exc:
        return {"path": path, "error": f"cannot parse the expiry of {path}: {exc}"}
    return {"path": path, "not_after": time.strftime("%Y-%m-%d", time.gmtime(not_after)),
            "not_after_epoch": not_after, "days_left": days_left(not_after, now)}


def nginx_view(link, intent_path, ask_nginx, name="tsh_erp"):
    """The link's colour, the colour nginx routes to (X-TSH-Color) and what a reconcile would say
    ('' when they agree), with tsh_switch's own reading of each."""
    view = {"link": None, "routed": None, "nginx_status": None, "disagreement": ""}
    try:
        view["link"] = link_colour(link, name) or None
        intent = read_intent(intent_path)
    except SwitchError as exc:
        view["disagreement"] = str(exc)
        return view
    try:
        status, routed, _body = ask_nginx()
    except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
        view["nginx_error"] = f"nginx does not answer: {exc}"
        return view
    view["routed"], view["nginx_status"] = routed, status
    try:
        view["disagreement"] = plan_reconcile(view["link"] or "", routed, intent)["message"]
    except SwitchError as exc:
        view["disagreement"] = str(exc)
    if intent:
        view["intent"] = intent
    return view


def gather_web(link, intent_path, ask_nginx, lock_dir, lock_ttl, certificate, run, now, name="tsh_erp"):
    """The web host's part."""
    view = nginx_view(link, intent_path, ask_nginx, name)
    view["lock"] = read_lock(lock_dir, now, lock_ttl)
    view["certificate"] = read_certificate(certificate, run, now)
    return view


# ---------------------------------------------------------------------------------------------
# Gathering on the db host: the last backup


# A database dump's name: <db>_<UTC stamp>[-<label>].dump (the backups role's tsh-backup).
_DUMP = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*_[0-9]{8}T[0-9]{6}Z(-[A-Za-z0-9._+-]+)?[.]dump$")


def backups_kept(backup_dir, statvfs=os.statvfs):
    """What the backup directory holds (dumps, bytes of every file) and its file system's free space."""
    try:
        entries = [e for e in os.scandir(backup_dir) if e.is_file(follow_symlinks=False)]
        kept = {"dumps": sum(1 for e in entries if _DUMP.match(e.name)),
                "bytes": sum(e.stat(follow_symlinks=False).st_size for e in entries)}
    except OSError as exc:
        kept = {"error": f"cannot list {backup_dir}: {exc.strerror or exc}"}
    kept["disk"] = disk_free(backup_dir, statvfs)
    return kept


def gather_db(status_file, backup_dir, now, statvfs=os.statvfs):
    """The last successful backup (the backups role's status file): age, files, their size; and what
    the backup directory keeps, with its free space."""
    record, error = _read_json(status_file)
    if error:
        return {"backup": {"error": error}}
    if not isinstance(record, dict) or "last_success_epoch" not in record:
        return {"backup": None}
    files = [str(f) for f in record.get("files") or []]
    total, missing = 0, []
    for name in files:
        try:
            total += os.stat(os.path.join(backup_dir, name)).st_size
        except OSError:
            missing.append(name)
    try:
        age = int(now - float(record["last_success_epoch"]))
    except (TypeError, ValueError):
        age = None
    return {"backup": {"last_success": record.get("last_success"), "age_s": age,
                       "label": record.get("label") or "", "files": files, "size_bytes": total,
                       "missing_files": missing, "kept": backups_kept(backup_dir, statvfs)}}


# ---------------------------------------------------------------------------------------------
# On the controller: merge the hosts' parts into one status per web host


def merge(reports, unreachable=()):
    """reports: {host: the module's result}. One cell per web host: the app hosts behind it (their
    web_host), its link/lock/certificate and the backup of the cell's db host. Returns
    {'cells': [...], 'unreachable': [...]}."""
    cells = []
    for host, report in reports.items():
        if "app" not in (report.get("parts") or []):
            continue
        web = report.get("web_host") or host
        cell = next((c for c in cells if c["web_host"] == web), None)
        if cell is None:
            cell = {"web_host": web, "db_host": report.get("backup_host") or host, "app_hosts": []}
            cells.append(cell)
        cell["app_hosts"].append(host)
    result = []
    for cell in cells:
        web = reports.get(cell["web_host"], {}).get("web")
        db = reports.get(cell["db_host"], {}).get("db")
        apps = {h: reports[h]["app"] for h in cell["app_hosts"]}
        seen, deploys = set(), []
        for app in apps.values():
            for record in app.get("deploys") or []:
                key = json.dumps({k: record.get(k) for k in ("time", "operation", "version", "outcome", "to_color")},
                                 sort_keys=True)
                if key not in seen:
                    seen.add(key)
                    deploys.append(record)
        deploys.sort(key=lambda r: str(r.get("time", "")))
        lines = max((reports[h].get("audit_lines", 5) for h in cell["app_hosts"]), default=5)
        serving = None
        if web:
            serving = web.get("routed") or web.get("link")
        releases = sorted({str(a["colours"][serving]["release"]) for a in apps.values()
                           if serving and a["colours"].get(serving, {}).get("release")})
        result.append({
            "web_host": cell["web_host"], "db_host": cell["db_host"],
            "serving": {"colour": serving, "release": ", ".join(releases) or None,
                        "link": (web or {}).get("link"), "routed": (web or {}).get("routed")},
            "nginx": None if web is None else {k: v for k, v in web.items() if k not in ("lock", "certificate")},
            "app": apps,
            "lock": (web or {}).get("lock"),
            "deploys": deploys[-lines:],
            "certificate": (web or {}).get("certificate"),
            "backup": (db or {}).get("backup"),
            "reached": {"web": web is not None, "db": db is not None},
        })
    return {"cells": result, "unreachable": sorted(unreachable)}


def warnings(cell, thresholds=None):
    """What needs a look in one cell, each a sentence."""
    limits = dict(THRESHOLDS, **(thresholds or {}))
    out = []
    multi = len(cell["app"]) > 1
    nginx = cell["nginx"]
    serving = cell["serving"]["colour"]
    if not cell["reached"]["web"]:
        out.append(f"The web host {cell['web_host']} was not reached: link, lock and certificate unknown.")
    elif nginx.get("nginx_error"):
        out.append(f"{nginx['nginx_error']} (web host {cell['web_host']}).")
    elif nginx.get("disagreement"):
        out.append(f"Link and nginx disagree: {nginx['disagreement']}")
    if cell["reached"]["web"] and not serving:
        out.append("No colour serves yet (no active link): deploy a release.")
    for host, app in cell["app"].items():
        where = f" on {host}" if multi else ""
        state = app["colours"].get(serving) if serving else None
        if state is None:
            pass
        elif not state.get("release"):
            out.append(f"The serving colour {serving} has no release{where} (never deployed).")
        elif state.get("active") != "active":
            out.append(f"The serving colour {serving} is {state.get('active')}{where}.")
        else:
            health = state.get("health") or {}
            if health.get("code") != 200:
                said = health.get("error") or f"status {health.get('code')} {health.get('status', '')}".strip()
                out.append(f"The serving colour {serving} does not answer its health check{where}: {said}.")
        if state is not None and state.get("enabled") != "enabled":
            out.append(f"The serving colour {serving} is not enabled at boot{where} ({state.get('enabled')}): "
                       f"systemctl enable tsh_erp-{serving}, or run deploy/rollback.")
        disk = app.get("disk") or {}
        if disk.get("error"):
            out.append(f"Free disk unknown{where}: {disk['error']}.")
        elif disk and disk["free_percent"] < limits["disk_min_free_percent"]:
            out.append(f"Disk {disk['path']}{where} has {disk['free_percent']:.1f} % free, under "
                       f"{limits['disk_min_free_percent']} %.")
    lock = cell["lock"]
    if lock and lock.get("stale"):
        out.append(f"The deploy lock is stale ({duration(lock.get('age_s'))} old): if no deploy runs, "
                   f"ansible-playbook -i <inventory> playbooks/unlock.yml shows its run and breaks it.")
    cert = cell["certificate"]
    if cell["reached"]["web"]:
        if cert is None:
            out.append("No certificate yet (run site.yml; acme_sh issues it).")
        elif cert.get("error"):
            out.append(f"Certificate: {cert['error']}.")
        elif cert["days_left"] < limits["cert_min_days"]:
            out.append(f"The certificate expires {cert['not_after']} ({cert['days_left']} days left, under "
                       f"{limits['cert_min_days']}): check acme-sh-renew.timer.")
    backup = cell["backup"]
    if not cell["reached"]["db"]:
        out.append(f"The db host {cell['db_host']} was not reached: backup unknown.")
    elif backup is None:
        out.append("No backup yet (tsh-backup.timer runs daily; systemctl start tsh-backup).")
    elif backup.get("error"):
        out.append(f"Backup status: {backup['error']}.")
    else:
        if backup["age_s"] is None or backup["age_s"] > limits["backup_max_age_h"] * 3600:
            out.append(f"The last backup is {duration(backup['age_s'])} old, over {limits['backup_max_age_h']} h: "
                       f"journalctl -u tsh-backup.")
        if backup.get("missing_files"):
            out.append(f"Files of the last backup are gone: {', '.join(backup['missing_files'])}.")
        disk = (backup.get("kept") or {}).get("disk") or {}
        need = backup["size_bytes"] + limits["backup_min_free_mb"] * 1024 * 1024
        if "free_bytes" in disk and disk["free_bytes"] < need:
            out.append(f"The next backup will refuse to start: {size(disk['free_bytes'])} free on {disk['path']}, "
                       f"under the last backup's {size(backup['size_bytes'])} plus {limits['backup_min_free_mb']} MB "
                       f"(backups_min_free_mb). Free space or keep fewer (backups_retention_count).")
    return out


def status(reports, unreachable=(), thresholds=None):
    """The merged status with each cell's warnings and all of them at the top level (the JSON form)."""
    merged = merge(reports, unreachable)
    everything = [f"Host {h} was not reached." for h in merged["unreachable"]]
    for cell in merged["cells"]:
        cell["warnings"] = warnings(cell, thresholds)
        prefix = f"{cell['web_host']}: " if len(merged["cells"]) > 1 else ""
        everything += [prefix + w for w in cell["warnings"]]
    merged["warnings"] = everything
    return merged


# ---------------------------------------------------------------------------------------------
# The table


def _table(rows):
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]


def _health(state):
    if state.get("active") != "active":
        return "-"
    health = state.get("health") or {}
    if health.get("code") is None:
        return "no answer"
    return f"{health['code']} {health.get('status') or ''}".strip()


def _deploy_line(record):
    if "error" in record:
        return record["error"]
    when = str(record.get("time", "?")).replace("T", " ")
    move = f"{record.get('from_color') or 'none'} -> {record.get('to_color') or '?'}"
    outcome = record.get("outcome", "?")
    if outcome != "success" and record.get("failed_phase"):
        outcome = f"failed in {record['failed_phase']}"
    took = f"{record['total_s']} s" if str(record.get("total_s", "")).isdigit() else ""
    return "  ".join(str(v) for v in (when, record.get("operation", "?"), record.get("version") or "-", move,
                                      outcome, took, record.get("who", "")) if v != "")


def render_cell(cell, label=20):
    def line(name, text):
        return f"{name.ljust(label)}{text}".rstrip()

    lines = []
    serving = cell["serving"]
    nginx = cell["nginx"] or {}
    if serving["colour"]:
        routed = f"nginx routes to {serving['routed']}" if serving["routed"] else "nginx does not say"
        lines.append(line("Serving", f"{serving['colour']}  release {serving['release'] or 'none'}  "
                                     f"(link {serving['link'] or 'none'}, {routed})"))
    else:
        lines.append(line("Serving", "none" if cell["reached"]["web"] else "unknown (web host not reached)"))
    rows = [["host", "colour", "unit", "boot", "release", "health", "uptime"]]
    for host, app in cell["app"].items():
        for colour in COLOURS:
            state = app["colours"][colour]
            rows.append([host, colour + (" *" if colour == serving["colour"] else ""), state.get("active", "?"),
                         state.get("enabled", "?"), state.get("release") or "none", _health(state),
                         duration(state.get("uptime_s")) if state.get("uptime_s") is not None else "-"])
    if len(cell["app"]) == 1:
        rows = [r[1:] for r in rows]
    for i, text in enumerate(_table(rows)):
        lines.append(line("Colours" if i == 0 else "", text))
    lock = cell["lock"]
    if not cell["reached"]["web"]:
        lock_text = "unknown"
    elif lock is None:
        lock_text = "none"
    elif lock["state"] == "held":
        lock_text = (f"held by {lock.get('holder', '?')}: {lock.get('operation', 'deploy')} "
                     f"{lock.get('version', '?')}, {duration(lock.get('age_s'))} ago"
                     + (" (STALE)" if lock.get("stale") else ""))
    else:
        lock_text = f"{lock['state']}, {duration(lock.get('age_s'))} ago" + (f": {lock['error']}" if lock.get("error") else "")
    lines.append(line("Lock", lock_text))
    deploys = cell["deploys"]
    if not deploys:
        lines.append(line("Last deploys", "none"))
    for i, record in enumerate(reversed(deploys)):
        lines.append(line("Last deploys" if i == 0 else "", _deploy_line(record)))
    cert = cell["certificate"]
    if not cell["reached"]["web"]:
        cert_text = "unknown"
    elif cert is None:
        cert_text = "none"
    elif cert.get("error"):
        cert_text = cert["error"]
    else:
        cert_text = f"expires {cert['not_after']} ({cert['days_left']} days left)"
    lines.append(line("Certificate", cert_text))
    backup = cell["backup"]
    if not cell["reached"]["db"]:
        backup_text = "unknown"
    elif backup is None:
        backup_text = "never"
    elif backup.get("error"):
        backup_text = backup["error"]
    else:
        backup_text = (f"{duration(backup['age_s'])} ago ({backup.get('last_success')}"
                       f"{', ' + backup['label'] if backup.get('label') else ''}), {len(backup['files'])} files, "
                       f"{size(backup['size_bytes'])}")
    lines.append(line("Last backup", backup_text))
    kept = (backup or {}).get("kept")  # none when the db host was not reached or its record unreadable
    if kept:
        disk = kept["disk"]
        held = kept["error"] if "error" in kept else f"{kept['dumps']} dump{'' if kept['dumps'] == 1 else 's'}, {size(kept['bytes'])} in all"
        free = disk["error"] if "error" in disk else f"{size(disk['free_bytes'])} free on {disk['path']}"
        lines.append(line("Backups kept", f"{held}; {free}"))
    for i, (host, app) in enumerate(cell["app"].items()):
        disk = app.get("disk") or {}
        where = f"{host}: " if len(cell["app"]) > 1 else ""
        if disk.get("error"):
            text = disk["error"]
        else:
            text = (f"{disk['free_percent']:.1f} % free ({disk['free_bytes'] / 1e9:.1f} GB of "
                    f"{disk['total_bytes'] / 1e9:.1f} GB) on {disk['path']}")
        lines.append(line("Free disk" if i == 0 else "", where + text))
    if nginx.get("intent"):
        lines.append(line("Switch under way", json.dumps(nginx["intent"], sort_keys=True)))
    warned = cell.get("warnings") or []
    lines.append(line("Warnings", "none" if not warned else warned[0]))
    lines += [line("", w) for w in warned[1:]]
    return lines


def render_table(full):
    """The whole status as lines of text (one block per web host when there are several)."""
    lines = []
    many = len(full["cells"]) > 1
    for cell in full["cells"]:
        if many or cell["web_host"] != cell["db_host"] or len(cell["app"]) > 1:
            apps = ", ".join(cell["app"])
            lines.append(f"TSH ERP on {cell['web_host']} (app: {apps}; db: {cell['db_host']})")
        else:
            lines.append(f"TSH ERP on {cell['web_host']}")
        lines += render_cell(cell)
        if many:
            lines.append("")
    if not full["cells"]:
        lines.append("No app host answered: nothing to report.")
    for host in full["unreachable"]:
        lines.append(f"Host {host} was not reached.")
    while lines and not lines[-1]:
        lines.pop()
    return lines
