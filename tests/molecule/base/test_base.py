"""The base role's behaviour on a converged host."""

import os
import socket
import subprocess
import time

from conftest import container_ip

testinfra_hosts = ["ansible://targets"]
SSH_OPTS = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "ConnectTimeout=10"]


def test_sshd_config_test_passes(host):
    assert host.run("/usr/sbin/sshd -t").rc == 0


def test_sshd_effective_settings(host):
    effective = host.check_output("/usr/sbin/sshd -T")
    settings = dict(line.split(" ", 1) for line in effective.splitlines() if " " in line)
    assert settings["passwordauthentication"] == "no"
    assert settings["kbdinteractiveauthentication"] == "no"
    assert settings["permitrootlogin"] in ("without-password", "prohibit-password")
    assert settings["authenticationmethods"] == "publickey"
    assert settings["x11forwarding"] == "no"
    assert settings["allowtcpforwarding"] == "no"
    assert settings["allowagentforwarding"] == "no"
    assert settings["maxsessions"] == "2"
    assert settings["tcpkeepalive"] == "no"
    assert settings["loglevel"] == "VERBOSE"
    assert settings["compression"] == "no"
    assert all(kex.startswith(("sntrup761x25519", "mlkem768x25519")) for kex in settings["kexalgorithms"].split(","))
    assert "ecdsa" not in settings["hostkeyalgorithms"]
    assert not [m for m in settings["macs"].split(",") if not m.endswith("-etm@openssh.com")]


def test_running_sshd_refuses_passwords_and_takes_root_keys(host):
    """Log in to the running daemon: passwords are not offered, a root key works."""
    host.run_expect([0], "mkdir -p -m 0700 /root/.ssh")
    host.run_expect([0], "test -f /root/.ssh/test_key || ssh-keygen -q -t ed25519 -N '' -f /root/.ssh/test_key")
    host.run_expect([0], "cp /root/.ssh/test_key.pub /root/.ssh/authorized_keys && chmod 0600 /root/.ssh/authorized_keys")
    opts = "-o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=5"
    password = host.run(
        f"ssh {opts} -o PubkeyAuthentication=no -o PreferredAuthentications=password,keyboard-interactive "
        "root@127.0.0.1 true"
    )
    assert password.rc != 0
    assert "Permission denied (publickey)" in password.stderr
    key = host.run(f"ssh {opts} -i /root/.ssh/test_key root@127.0.0.1 echo key-login-ok")
    assert key.rc == 0, key.stderr
    assert key.stdout.strip() == "key-login-ok"


def test_controller_connects_over_ssh_with_the_hardened_algorithms(host, tmp_path):
    """From the controller, as a deploy does: OpenSSH's client agrees a post-quantum key exchange and
    an Ed25519 host key, and ansible-core runs a module over SSH (not docker exec)."""
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    host.run_expect([0], "mkdir -p -m 0700 /root/.ssh")
    host.run_expect([0], f"echo '{key.with_suffix('.pub').read_text().strip()}' >> /root/.ssh/authorized_keys")
    address = container_ip(host.backend.get_hostname())
    ssh = subprocess.run(["ssh", "-v", *SSH_OPTS, "-i", str(key), f"root@{address}", "true"],
                         capture_output=True, text=True, check=False)
    assert ssh.returncode == 0, ssh.stderr[-2000:]
    kex = [line for line in ssh.stderr.splitlines() if "kex: algorithm:" in line]
    assert kex and ("sntrup761x25519" in kex[0] or "mlkem768x25519" in kex[0]), kex
    assert any("Server host key: ssh-ed25519" in line for line in ssh.stderr.splitlines()), ssh.stderr[-2000:]
    env = dict(os.environ, ANSIBLE_HOST_KEY_CHECKING="False")
    ping = subprocess.run(["ansible", "all", "-i", f"{address},", "-u", "root", "--private-key", str(key),
                           "-m", "ansible.builtin.ping"], capture_output=True, text=True, env=env, check=False)
    assert ping.returncode == 0 and '"ping": "pong"' in ping.stdout, ping.stdout[-2000:] + ping.stderr[-2000:]


def test_ssh_audit_finds_no_failure_and_no_warning(host):
    """ssh-audit (jtesta/ssh-audit) from the controller: exit 0 means no failure and no warning.
    The connection-rate test is skipped: OpenSSH 10's per-source penalties then refuse this
    controller for a while, and throttling is the firewall's part."""
    audit = subprocess.run(["ssh-audit", "--skip-rate-test", "--level", "warn",
                            container_ip(host.backend.get_hostname())],
                           capture_output=True, text=True, check=False)
    assert audit.returncode == 0, audit.stdout[-4000:]


def test_timezone_is_utc(host):
    assert host.check_output("date +%Z") == "UTC"
    assert host.file("/etc/localtime").linked_to.endswith(("Etc/UTC", "UTC"))


def test_journald_limits_in_effect(host):
    config = host.check_output("systemd-analyze cat-config systemd/journald.conf")
    assert "SystemMaxUse=500M" in config
    assert host.service("systemd-journald").is_running


def test_unattended_upgrades_take_security_only(host):
    periodic = host.check_output("apt-config dump APT::Periodic::Unattended-Upgrade")
    assert '"1"' in periodic
    dry = host.run("unattended-upgrade --dry-run --debug 2>&1")
    assert dry.rc == 0, dry.stdout
    allowed = [line for line in dry.stdout.splitlines() if line.startswith("Allowed origins are:")]
    assert allowed, dry.stdout[-2000:]
    assert "security" in allowed[0].lower()
    codename = host.system_info.codename
    assert f"codename={codename}" in allowed[0]


def test_login_shells_get_no_core_dumps_and_an_idle_timeout(host):
    shell = host.run("bash -lc 'echo core=$(ulimit -c) tmout=$TMOUT; TMOUT=1' </dev/null")
    assert "core=0 tmout=900" in shell.stdout, shell.stdout + shell.stderr
    assert "readonly variable" in shell.stderr, "TMOUT must not be changeable in the session"
    assert "Storage=none" in host.check_output("systemd-analyze cat-config systemd/coredump.conf")
    assert "Authorised access only" in host.file("/etc/issue.net").content_string


def test_unused_kernel_modules_cannot_load(host):
    """modprobe's own view of its configuration (no module files needed, as in a container)."""
    config = host.check_output("modprobe --showconfig")
    for module in ("usb-storage", "firewire-core", "dccp", "sctp", "rds", "tipc"):
        assert f"install {module.replace('-', '_')} /bin/false" in config, module


def test_new_accounts_get_password_aging_and_hashing_rounds(host):
    host.run_expect([0], "id tsh-aging-probe >/dev/null 2>&1 || useradd --no-create-home tsh-aging-probe")
    try:
        aging = host.check_output("chage -l tsh-aging-probe")
        assert "Maximum number of days between password change\t\t: 365" in aging, aging
        assert "Minimum number of days between password change\t\t: 1" in aging, aging
    finally:
        host.run("userdel tsh-aging-probe")
    assert host.run("grep -E '^SHA_CRYPT_(MIN|MAX)_ROUNDS\\s+65536$' /etc/login.defs").stdout.count("\n") == 2


def _ssh_port_open(address: str) -> bool:
    try:
        with socket.create_connection((address, 22), timeout=5):
            return True
    except OSError:
        return False


def test_fail2ban_bans_an_address_that_keeps_failing_then_lets_it_back(host):
    """From the controller, as an attacker would: logins as users that do not exist until fail2ban
    (journal backend, its own iptables chain, five failures) bans the controller's address; SSH no
    longer answers it; unbanned, it answers again. Runs last: the other SSH checks need the
    controller let in."""
    assert host.service("fail2ban").is_running and host.service("fail2ban").is_enabled
    address = container_ip(host.backend.get_hostname())
    source = host.check_output("ip -4 route show default").split()[2]
    assert _ssh_port_open(address)
    try:
        for attempt in range(8):
            if source in host.check_output("fail2ban-client status sshd"):
                break
            try:
                login = subprocess.run(["ssh", *SSH_OPTS, "-o", "PubkeyAuthentication=no",
                                        f"tsh-nobody-{attempt}@{address}", "true"],
                                       capture_output=True, text=True, timeout=15, check=False)
                assert login.returncode != 0, login.stdout
            except subprocess.TimeoutExpired:
                pass  # the ban landed while this login was under way: its packets are refused
        deadline = time.monotonic() + 30
        status = ""
        while time.monotonic() < deadline:
            status = host.check_output("fail2ban-client status sshd")
            if source in status:
                break
            time.sleep(1)
        assert source in status, status
        assert not _ssh_port_open(address), "a banned address still reaches SSH"
    finally:
        host.run(f"fail2ban-client set sshd unbanip {source}")
    assert _ssh_port_open(address), "the unbanned address does not reach SSH again"
