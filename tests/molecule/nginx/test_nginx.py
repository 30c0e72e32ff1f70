"""nginx on a converged target, exercised through real requests with the sites' Host names."""

import json
import pathlib
import re

import pytest

from conftest import container_ip, output, run_playbook

testinfra_hosts = ["ansible://targets"]

APPLY = pathlib.Path(__file__).with_name("apply_nginx.yml")
NAMES = ["tsh.sale", "www.tsh.sale", "erp.tsh.sale", "shop.tsh.sale", "consumer.tsh.sale"]
ACTIVE = "/etc/nginx/upstreams/tsh_erp_active.conf"
CONFIG_FILES = "/etc/nginx/nginx.conf /etc/nginx/sites-enabled/* /etc/nginx/upstreams/*"


@pytest.fixture()
def ip(host):
    return container_ip(host.backend.get_hostname())


def curl(host, ip, url, *args):
    """curl from the target to its own network address, resolving the URL's name to it.
    Returns (status, headers dict with lower-case names, body)."""
    name = re.match(r"https?://([^/:]+)", url).group(1)
    port = 443 if url.startswith("https") else 80
    cmd = host.run(
        f"curl -sk --max-time 10 -D /dev/stderr -o - --resolve {name}:{port}:{ip} {' '.join(args)} '{url}'"
    )
    assert cmd.rc == 0, cmd.stderr
    blocks = [b for b in cmd.stderr.replace("\r", "").split("\n\n") if b.strip()]
    lines = blocks[-1].splitlines()
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return status, headers, cmd.stdout


def test_config_test_prints_no_warnings(host):
    cmd = host.run("nginx -t")
    assert cmd.rc == 0
    lines = [line for line in (cmd.stdout + cmd.stderr).splitlines() if line.strip()]
    assert lines == [
        "nginx: the configuration file /etc/nginx/nginx.conf syntax is ok",
        "nginx: configuration file /etc/nginx/nginx.conf test is successful",
    ]


def test_nginx_running_and_enabled(host):
    assert host.service("nginx").is_running
    assert host.service("nginx").is_enabled


@pytest.mark.parametrize("name", NAMES)
def test_port_80_redirects_to_https(host, ip, name):
    status, headers, _ = curl(host, ip, f"http://{name}/some/path?q=1")
    assert status == 301
    assert headers["location"] == f"https://{name}/some/path?q=1"


def test_port_80_serves_acme_challenges(host, ip):
    host.run_expect([0], "mkdir -p /var/www/acme/.well-known/acme-challenge")
    host.run_expect([0], "echo tsh-token-body > /var/www/acme/.well-known/acme-challenge/tsh-test-token")
    try:
        status, _, body = curl(host, ip, "http://shop.tsh.sale/.well-known/acme-challenge/tsh-test-token")
        assert status == 200
        assert body.strip() == "tsh-token-body"
        status, _, _ = curl(host, ip, "http://shop.tsh.sale/.well-known/acme-challenge/missing")
        assert status == 404
    finally:
        host.run_expect([0], "rm -f /var/www/acme/.well-known/acme-challenge/tsh-test-token")


def test_apex_redirects_to_www(host, ip):
    status, headers, _ = curl(host, ip, "https://tsh.sale/orders?id=7")
    assert status == 301
    assert headers["location"] == "https://www.tsh.sale/orders?id=7"
    assert headers["strict-transport-security"].startswith("max-age=63072000")


def test_api_reaches_the_active_colour(host, ip):
    assert host.file(ACTIVE).linked_to == "/etc/nginx/upstreams/tsh_erp_blue.conf"
    status, headers, body = curl(host, ip, "https://erp.tsh.sale/api/health")
    assert status == 200
    seen = json.loads(body)
    assert seen["port"] == 8001
    assert seen["path"] == "/api/health"
    assert seen["headers"]["host"] == "erp.tsh.sale"
    assert seen["headers"]["x-forwarded-proto"] == "https"
    assert "strict-transport-security" in headers
    # The colour nginx routes to is named to loopback clients only (the deploy's smoke check).
    assert "x-tsh-color" not in headers
    _, local_headers, _ = curl(host, "127.0.0.1", "https://erp.tsh.sale/api/health")
    assert local_headers["x-tsh-color"] == "blue"


def test_api_upstream_connections_are_kept_alive(host, ip):
    """Ten requests on one client connection reach the upstream over HTTP/1.1 without a
    Connection header, through one reused upstream connection (same peer port)."""
    urls = " ".join(f"https://erp.tsh.sale/api/ka/{i}" for i in range(10))
    cmd = host.run(f"curl -sk --max-time 10 --http1.1 --resolve erp.tsh.sale:443:{ip} -w '\\n' {urls}")
    assert cmd.rc == 0, cmd.stderr
    answers = [json.loads(line) for line in cmd.stdout.splitlines() if line.strip()]
    assert len(answers) == 10
    assert {a["version"] for a in answers} == {"HTTP/1.1"}
    assert all("connection" not in a["headers"] for a in answers)
    assert len({a["peer"][1] for a in answers}) == 1, answers


def test_websocket_upgrade_passes_connection_upgrade(host, ip):
    _, _, body = curl(
        host, ip, "https://erp.tsh.sale/ws", "--http1.1",
        "-H 'Connection: Upgrade'", "-H 'Upgrade: websocket'",
    )
    seen = json.loads(body)
    assert seen["headers"]["connection"] == "upgrade"
    assert seen["headers"]["upgrade"] == "websocket"


@pytest.mark.parametrize(("colour", "port"), [("blue", 8001), ("green", 8002)])
def test_preview_listener_reaches_either_colour(host, colour, port):
    """The deploy gate's loopback listener reaches the named colour whatever is active."""
    cmd = host.run(
        f"curl -s --max-time 5 -H 'Host: erp.tsh.sale' -H 'X-TSH-Preview-Color: {colour}' http://127.0.0.1:8099/health"
    )
    assert cmd.rc == 0, cmd.stderr
    assert json.loads(cmd.stdout)["port"] == port


def test_preview_listener_needs_a_colour_and_stays_on_loopback(host, ip):
    status = host.check_output("curl -s -o /dev/null -w '%{http_code}' -H 'Host: erp.tsh.sale' http://127.0.0.1:8099/")
    assert status == "400"
    assert not host.socket(f"tcp://{ip}:8099").is_listening
    assert host.run(f"curl -s --max-time 3 http://{ip}:8099/").rc == 7  # connection refused


@pytest.mark.parametrize(
    ("name", "marker"),
    [("www.tsh.sale", "tsh-admin-index"), ("shop.tsh.sale", "tsh-consumer-index"),
     ("consumer.tsh.sale", "tsh-consumer-index")],
)
def test_index_is_never_cached(host, ip, name, marker):
    for path in ["/", "/index.html"]:
        status, headers, body = curl(host, ip, f"https://{name}{path}")
        assert status == 200
        assert marker in body
        assert headers["cache-control"] == "no-cache"
        assert headers["strict-transport-security"] == "max-age=63072000; includeSubDomains"


@pytest.mark.parametrize(
    ("name", "path", "marker"),
    [("www.tsh.sale", "/assets/app.3f2a9c1b.js", "tsh-admin-asset"),
     ("shop.tsh.sale", "/assets/main.a1b2c3d4.css", "tsh-consumer-asset")],
)
def test_hashed_assets_cached_long_and_gzipped(host, ip, name, path, marker):
    status, headers, body = curl(host, ip, f"https://{name}{path}")
    assert status == 200
    assert marker in body
    assert headers["cache-control"] == "public, max-age=31536000, immutable"
    assert "strict-transport-security" in headers
    _, gz_headers, _ = curl(host, ip, f"https://{name}{path}", "--compressed")
    assert gz_headers["content-encoding"] == "gzip"


KINDS = {"tsh.sale": "redirect", "www.tsh.sale": "static", "erp.tsh.sale": "proxy",
         "shop.tsh.sale": "static", "consumer.tsh.sale": "static"}


@pytest.mark.parametrize("name", NAMES)
def test_security_headers_on_every_name(host, ip, name):
    """Each site kind's header set, on answers and on errors (a missing page)."""
    for path in ["/", "/no/such/page"]:
        _, headers, _ = curl(host, ip, f"https://{name}{path}")
        assert headers["strict-transport-security"] == "max-age=63072000; includeSubDomains"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        if KINDS[name] == "static":
            csp = headers["content-security-policy"]
            for directive in ["default-src 'self'", "script-src 'self'", "object-src 'none'",
                              "connect-src 'self' https://erp.tsh.sale wss://erp.tsh.sale",
                              "frame-ancestors 'none'"]:
                assert directive in csp, csp
            assert headers["referrer-policy"] == "strict-origin-when-cross-origin"
            assert headers["permissions-policy"].startswith("camera=(), microphone=()")
        elif KINDS[name] == "proxy":
            assert headers["content-security-policy"] == "frame-ancestors 'none'"
            assert headers["referrer-policy"] == "no-referrer"
        else:
            assert "content-security-policy" not in headers
            assert headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize("name", ["www.tsh.sale", "shop.tsh.sale"])
def test_shipped_frontends_load_under_their_policy(host, ip, name):
    """What script-src 'self' and style-src 'self' allow: the pages load scripts and styles from
    their own origin only, and run no inline script."""
    _, _, body = curl(host, ip, f"https://{name}/")
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", body, re.S)
    links = re.findall(r"<link[^>]*href=\"([^\"]+)\"", body)
    for attributes, inline in scripts:
        assert inline.strip() == "", f"inline script on {name}"
        src = re.search(r'src="([^"]+)"', attributes).group(1)
        assert src.startswith("/") and not src.startswith("//"), src
    assert all(href.startswith("/") and not href.startswith("//") for href in links), links


def test_csp_report_only_for_a_rollout(host, ip):
    """nginx_csp_report_only sends the same policy as Content-Security-Policy-Report-Only, with the
    report-uri; put back, the policy is enforced again."""
    try:
        run = run_playbook(
            APPLY, "-e", '{"nginx_csp_report_only": true, "nginx_csp_report_uri": "https://erp.tsh.sale/csp-reports"}',
            limit=host.backend.get_hostname(),
        )
        assert run.returncode == 0, output(run)[-3000:]
        _, headers, _ = curl(host, ip, "https://shop.tsh.sale/")
        assert "content-security-policy" not in headers
        report = headers["content-security-policy-report-only"]
        assert "script-src 'self'" in report and report.endswith("; report-uri https://erp.tsh.sale/csp-reports")
    finally:
        back = run_playbook(APPLY, limit=host.backend.get_hostname())
        assert back.returncode == 0, output(back)[-3000:]
    _, headers, _ = curl(host, ip, "https://shop.tsh.sale/")
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "content-security-policy-report-only" not in headers


@pytest.mark.parametrize("name", ["shop.tsh.sale", "consumer.tsh.sale"])
def test_consumer_app_falls_back_to_index(host, ip, name):
    status, headers, body = curl(host, ip, f"https://{name}/orders/42")
    assert status == 200
    assert "tsh-consumer-index" in body
    assert headers["cache-control"] == "no-cache"
    status, _, body = curl(host, ip, f"https://{name}/robots.txt")
    assert status == 200 and body.strip() == "tsh-consumer-robots"


def test_admin_site_has_no_fallback(host, ip):
    status, _, _ = curl(host, ip, "https://www.tsh.sale/no/such/page")
    assert status == 404


def test_unknown_host_is_closed(host, ip):
    plain = host.run("curl -s --max-time 5 -H 'Host: evil.example' http://%s/", ip)
    assert plain.rc == 52, plain  # empty reply: nginx closed the connection (444)
    tls = host.run("curl -sk --max-time 5 --resolve evil.example:443:%s https://evil.example/", ip)
    assert tls.rc == 35, tls  # TLS handshake refused


def _handshake(host, ip, *args):
    return host.run(f"openssl s_client -connect {ip}:443 -servername www.tsh.sale {' '.join(args)} </dev/null 2>&1")


def test_tls_1_2_and_1_3_accepted(host, ip):
    for flag, proto in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")]:
        cmd = _handshake(host, ip, flag)
        assert cmd.rc == 0, cmd.stdout
        assert f"Protocol  : {proto}" in cmd.stdout or f"New, {proto}" in cmd.stdout


@pytest.mark.parametrize("flag", ["-tls1_1", "-tls1"])
def test_old_tls_refused(host, ip, flag):
    """The client is allowed the old protocol (security level 0), so the refusal is the server's."""
    cmd = _handshake(host, ip, flag, "-cipher 'DEFAULT:@SECLEVEL=0'")
    assert cmd.rc != 0
    assert "alert protocol version" in cmd.stdout, cmd.stdout


def test_session_cache_resumes(host, ip):
    cmd = host.run(
        "openssl s_client -connect %s:443 -servername www.tsh.sale -tls1_2 -reconnect </dev/null 2>&1", ip
    )
    assert cmd.stdout.count("Reused, TLSv1.2") >= 4, cmd.stdout


def test_placeholder_certificate_covers_all_names(host):
    text = host.check_output("openssl x509 -in /etc/ssl/tsh/fullchain.pem -noout -ext subjectAltName")
    for name in NAMES:
        assert f"DNS:{name}" in text
    assert host.file("/etc/ssl/tsh/privkey.pem").mode == 0o600


def test_no_ocsp_stapling_without_a_responder(host):
    assert "ssl_stapling" not in host.check_output("nginx -T 2>/dev/null | grep -v '^#' | grep -v '# '")


def _nginx_state(host):
    files = host.check_output(f"sha256sum {CONFIG_FILES}")
    pids = host.check_output("pgrep -d, -f 'nginx: (master|worker)'")
    return files, pids


def test_broken_change_never_reaches_running_nginx(host, ip):
    before = _nginx_state(host)
    run = run_playbook(
        APPLY, "-e", '{"nginx_http_extra_directives": ["tsh_no_such_directive on;"]}',
        limit=host.backend.get_hostname(),
    )
    text = output(run)
    assert run.returncode != 0
    assert 'unknown directive "tsh_no_such_directive"' in text
    assert "nginx rejected the new configuration" in text
    # Files back as they were (no backups left behind), same master and workers: no reload.
    assert _nginx_state(host) == before
    assert host.run("ls /etc/nginx/sites-enabled /etc/nginx/ | grep -c '~$'").stdout.strip() == "0"
    assert host.run("nginx -t").rc == 0
    status, _, body = curl(host, ip, "https://erp.tsh.sale/api/still-serving")
    assert status == 200 and json.loads(body)["port"] == 8001


def test_rerun_never_moves_traffic_and_reloads_without_restart(host, ip):
    """With green active (a deploy switched it), a role run with a changed setting reloads
    nginx (same master process, new setting in effect) and leaves the colour alone."""
    host.run_expect([0], f"ln -sfn tsh_erp_green.conf {ACTIVE} && nginx -t && systemctl reload nginx")
    master = host.check_output("cat /run/nginx.pid")
    try:
        run = run_playbook(
            APPLY, "-e", '{"nginx_http_extra_directives": ["add_header X-Tsh-Test reloaded always;"]}',
            limit=host.backend.get_hostname(),
        )
        assert run.returncode == 0, output(run)[-3000:]
        assert host.file(ACTIVE).linked_to == "/etc/nginx/upstreams/tsh_erp_green.conf"
        _, _, body = curl(host, ip, "https://erp.tsh.sale/api/colour")
        assert json.loads(body)["port"] == 8002
        _, headers, _ = curl(host, ip, "http://www.tsh.sale/")
        assert headers.get("x-tsh-test") == "reloaded"
        assert host.check_output("cat /run/nginx.pid") == master
    finally:
        host.run_expect([0], f"ln -sfn tsh_erp_blue.conf {ACTIVE} && nginx -t && systemctl reload nginx")
        back = run_playbook(APPLY, limit=host.backend.get_hostname())
        assert back.returncode == 0, output(back)[-3000:]
    _, _, body = curl(host, ip, "https://erp.tsh.sale/api/colour")
    assert json.loads(body)["port"] == 8001


def test_api_down_answers_a_clear_503(host, ip):
    """No colour listening (before the first deploy): a JSON 503 with Retry-After, not nginx's 502."""
    host.run_expect([0], "systemctl stop tsh-test-api@8001.service")
    try:
        status, headers, body = curl(host, ip, "https://erp.tsh.sale/health")
        assert status == 503
        assert json.loads(body)["status"] == "maintenance"
        assert headers["retry-after"] == "30"
        assert headers["content-type"] == "application/json"
        assert "strict-transport-security" in headers
    finally:
        host.run_expect([0], "systemctl start tsh-test-api@8001.service")
        host.run_expect([0], "timeout 10 sh -c 'until curl -s -o /dev/null http://127.0.0.1:8001/; do sleep 0.2; done'")


def test_service_is_sandboxed(host):
    """systemd-analyze security 5.0 or lower (9.6 as the distribution ships it), and the running
    master was started under the sandbox (no new privileges)."""
    overall = host.check_output("systemd-analyze security --no-pager nginx.service | tail -n 1")
    assert float(re.search(r": ([0-9.]+)", overall).group(1)) <= 5.0, overall
    pid = host.check_output("systemctl show -p MainPID --value nginx.service")
    assert "NoNewPrivs:\t1" in host.file(f"/proc/{pid}/status").content_string
