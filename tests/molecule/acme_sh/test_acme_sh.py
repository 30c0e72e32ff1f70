"""acme.sh against a real ACME server (each target's own Pebble), seen through nginx.

Every check looks at both targets (fixture `hosts`), and every step that re-applies the roles runs
once on both at the same time: the Debian 12 and 13 runs overlap instead of following each other."""

import json
import pathlib
import time

import pytest

from conftest import output, recap, run_playbook, target_hosts

testinfra_hosts = []

APPLY = pathlib.Path(__file__).with_name("apply_acme_sh.yml")
NAMES = ["tsh.sale", "www.tsh.sale", "erp.tsh.sale", "shop.tsh.sale", "consumer.tsh.sale"]
SIXTH = "api.tsh.sale"
CA = "/usr/local/share/tsh-test/pebble-api.pem"
HOME = "/var/lib/acme.sh"
DOMAIN_CONF = f"{HOME}/tsh.sale_ecc/tsh.sale.conf"
SITES = [
    {"name": "erp.tsh.sale", "kind": "proxy"},
    {"name": "www.tsh.sale", "kind": "static", "root": "/var/www/tsh/admin"},
    {"name": "shop.tsh.sale", "kind": "static", "root": "/var/www/tsh/consumer", "spa": True},
    {"name": "consumer.tsh.sale", "kind": "static", "root": "/var/www/tsh/consumer", "spa": True},
    {"name": "tsh.sale", "kind": "redirect", "redirect_to": "https://www.tsh.sale"},
]


@pytest.fixture(scope="module")
def hosts():
    return target_hosts()


def name_of(host):
    return host.backend.get_hostname()


def served(host, name):
    """The certificate nginx presents for name over the network (through the name's alias)."""
    pem = host.check_output(
        f"openssl s_client -connect {name}:443 -servername {name} </dev/null 2>/dev/null | openssl x509"
    )
    serial = host.check_output(f"echo '{pem}' | openssl x509 -noout -serial").split("=", 1)[1]
    sans = host.check_output(f"echo '{pem}' | openssl x509 -noout -ext subjectAltName")
    return serial, sorted(s.strip()[4:] for s in sans.splitlines()[1].split(","))


def pebble_root(host):
    root = host.check_output(f"curl -fsS --cacert {CA} https://pebble:15000/roots/0")
    host.run_expect([0], f"echo '{root}' > /var/tmp/pebble-root.pem")
    return "/var/tmp/pebble-root.pem"


def apply(extra, *args):
    """Re-apply nginx and acme_sh on both targets at once with extra variables."""
    run = run_playbook(APPLY, "-e", json.dumps(extra), *args)
    return run, output(run)


def serials(hosts, name):
    return {name_of(host): served(host, name)[0] for host in hosts}


def nginx_pid(host):
    return host.check_output("systemctl show -p MainPID --value nginx")


def test_acme_sh_runs_unprivileged(hosts):
    for host in hosts:
        user = host.user("acme")
        assert user.uid != 0 and user.shell == "/usr/sbin/nologin"
        for path in [HOME, "/var/www/acme/.well-known/acme-challenge", "/etc/ssl/tsh/fullchain.pem",
                     "/etc/ssl/tsh/privkey.pem"]:
            assert host.file(path).user == "acme", path
        assert host.file("/etc/ssl/tsh/privkey.pem").mode == 0o600
        assert host.run("visudo -cf /etc/sudoers.d/acme-sh").rc == 0
        allowed = host.check_output("sudo -l -U acme")
        assert "/usr/sbin/nginx -t" in allowed and "/usr/bin/systemctl reload nginx" in allowed
        assert host.run("runuser -u acme -- sudo -n /usr/bin/systemctl restart nginx").rc != 0
        assert host.run("runuser -u acme -- sudo -n /bin/sh -c true").rc != 0


def test_account_and_server_recorded(hosts):
    for host in hosts:
        conf = host.check_output(f"cat {DOMAIN_CONF}")
        assert "Le_API='https://pebble:14000/dir'" in conf
        assert "Le_Keylength='ec-256'" in conf


@pytest.mark.parametrize("name", NAMES)
def test_every_name_serves_one_certificate_for_all(hosts, name):
    for host in hosts:
        _, sans = served(host, name)
        assert sans == sorted(NAMES), name_of(host)


def test_certificate_is_ecc_and_chains_to_pebble_root(hosts):
    for host in hosts:
        root = pebble_root(host)
        host.run_expect(
            [0], "openssl s_client -connect www.tsh.sale:443 -servername www.tsh.sale -showcerts </dev/null 2>/dev/null"
            " | awk '/BEGIN CERT/{n++} {print > \"/var/tmp/served-\" n \".pem\"}' "
        )
        leaf = host.check_output("openssl x509 -in /var/tmp/served-1.pem -noout -text")
        assert "id-ecPublicKey" in leaf
        verify = host.run(
            f"openssl verify -CAfile {root} -untrusted /var/tmp/served-2.pem /var/tmp/served-1.pem"
        )
        assert verify.rc == 0, verify.stdout + verify.stderr
        # And curl, trusting only Pebble's current root, accepts every name.
        for name in NAMES:
            host.run_expect([0], f"curl -sS -o /dev/null --cacert {root} https://{name}/")


def test_renewal_timer(hosts):
    for host in hosts:
        timer = host.service("acme-sh-renew.timer")
        assert timer.is_enabled and timer.is_running
        props = host.check_output("systemctl show -p TimersCalendar -p RandomizedDelayUSec acme-sh-renew.timer")
        assert "OnCalendar=daily" in props or "*-*-* 00:00:00" in props
        assert "RandomizedDelayUSec=1h" in props
        unit = host.check_output("systemctl show -p User -p ExecStart acme-sh-renew.service")
        assert "User=acme" in unit and "--cron" in unit


def test_forced_renewal_through_the_service_reloads_nginx(hosts):
    """Make the certificate due, start the timer's service: nginx serves a new serial, same process."""
    for host in hosts:
        before, _ = served(host, "www.tsh.sale")
        pid = nginx_pid(host)
        host.run_expect([0], f"runuser -u acme -- sed -i \"s/^Le_NextRenewTime=.*/Le_NextRenewTime='1'/\" {DOMAIN_CONF}")
        start = host.run("systemctl start acme-sh-renew.service")
        journal = host.run("journalctl -u acme-sh-renew.service -n 60 --no-pager").stdout
        assert start.rc == 0, journal
        # The renewal installed a new certificate on disk ...
        on_disk = host.check_output("openssl x509 -noout -serial -in /etc/ssl/tsh/fullchain.pem").split("=", 1)[1]
        assert on_disk != before, journal
        # ... and nginx serves it once its reload has replaced the workers (a reload returns before that).
        deadline = time.monotonic() + 20
        while (after := served(host, "www.tsh.sale"))[0] != on_disk and time.monotonic() < deadline:
            time.sleep(0.5)
        assert after[0] == on_disk, journal
        assert after[1] == sorted(NAMES)
        assert nginx_pid(host) == pid


def test_rerun_with_same_names_does_not_reissue(hosts):
    before = serials(hosts, "erp.tsh.sale")
    run, text = apply({})
    assert run.returncode == 0, text[-3000:]
    for host in hosts:
        assert recap(run, name_of(host))["changed"] == 0, text[-3000:]
    assert serials(hosts, "erp.tsh.sale") == before


def test_check_mode_predicts_a_reissue_and_changes_nothing(hosts):
    """--check: the same names report no change; a new name reports the reissue it would do, and
    neither touches acme.sh's settings or the served certificate."""
    before = serials(hosts, "www.tsh.sale")
    confs = {name_of(host): host.check_output(f"cat {DOMAIN_CONF}") for host in hosts}
    run, text = apply({}, "--check", "--diff")
    assert run.returncode == 0, text[-3000:]
    for host in hosts:
        assert recap(run, name_of(host))["changed"] == 0, text[-3000:]
    run, text = apply({"acme_sh_domains": NAMES + [SIXTH]}, "--check", "--diff")
    assert run.returncode == 0, text[-3000:]
    assert f"wanted: {', '.join(sorted(NAMES + [SIXTH]))}" in text, text[-3000:]
    for host in hosts:
        assert recap(run, name_of(host))["changed"] == 1, text[-3000:]
        assert host.check_output(f"cat {DOMAIN_CONF}") == confs[name_of(host)]
    assert serials(hosts, "www.tsh.sale") == before


def test_failed_issue_keeps_the_old_certificate(hosts):
    """A name nobody answers for: the play fails with acme.sh's reason, nginx keeps serving."""
    before = serials(hosts, "shop.tsh.sale")
    pids = {name_of(host): nginx_pid(host) for host in hosts}
    run, text = apply({"acme_sh_domains": NAMES + ["nowhere.tsh.sale"]})
    assert run.returncode != 0
    assert "acme.sh could not issue a certificate" in text
    assert "nowhere.tsh.sale" in text
    assert serials(hosts, "shop.tsh.sale") == before
    for host in hosts:
        assert recap(run, name_of(host))["failed"] == 1, text[-3000:]
        assert nginx_pid(host) == pids[name_of(host)]
        # The bad name list is not left in acme.sh's settings for the renewal timer to retry.
        assert "nowhere.tsh.sale" not in host.check_output(f"cat {DOMAIN_CONF}")


def test_adding_and_removing_a_name_reissues(hosts):
    sites = SITES + [{"name": SIXTH, "kind": "proxy"}]
    run, text = apply({"nginx_sites": sites, "acme_sh_domains": NAMES + [SIXTH]})
    assert run.returncode == 0, text[-3000:]
    for host in hosts:
        for name in (SIXTH, "tsh.sale"):
            assert served(host, name)[1] == sorted(NAMES + [SIXTH]), name_of(host)
    run, text = apply({})
    assert run.returncode == 0, text[-3000:]
    for host in hosts:
        assert served(host, "www.tsh.sale")[1] == sorted(NAMES), name_of(host)


def test_failed_renewal_raises_the_alert(hosts):
    """A renewal that cannot validate exits non-zero and starts the alert; nginx keeps its certificate."""
    for host in hosts:
        before, _ = served(host, "www.tsh.sale")
        host.run_expect([0], "rm -f /var/tmp/acme-sh-alerts")
        conf = host.check_output(f"cat {DOMAIN_CONF}")
        try:
            host.run_expect([0], f"runuser -u acme -- sed -i -e \"s/^Le_NextRenewTime=.*/Le_NextRenewTime='1'/\" "
                            f"-e \"s|^Le_Webroot=.*|Le_Webroot='/nonexistent'|\" {DOMAIN_CONF}")
            assert host.run("systemctl start acme-sh-renew.service").rc != 0
            host.run_expect([0], "timeout 30 sh -c 'until test -s /var/tmp/acme-sh-alerts; do sleep 0.2; done'")
            assert "acme-sh-renew.service" in host.check_output("cat /var/tmp/acme-sh-alerts")
            assert served(host, "www.tsh.sale")[0] == before
        finally:
            host.run_expect([0], f"runuser -u acme -- sh -c 'cat > {DOMAIN_CONF}' <<'EOF'\n{conf}\nEOF")
