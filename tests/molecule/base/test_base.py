"""The base role's behaviour on a converged host."""

import os
import subprocess

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
