"""The base role's behaviour on a converged host."""

testinfra_hosts = ["ansible://targets"]


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
