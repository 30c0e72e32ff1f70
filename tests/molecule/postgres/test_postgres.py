"""PostgreSQL seen the way its clients see it: logins over TCP, refusals, listeners, capacity guard."""

import json
import os
import pathlib
import shlex

import testinfra

from conftest import container_ip, outside_host, output, run_playbook, scenario_name, tcp_open

testinfra_hosts = ["ansible://targets"]

APPLY = pathlib.Path(__file__).with_name("apply_postgres.yml")
CONVERGE = pathlib.Path(__file__).resolve().parents[3] / "molecule/postgres/converge.yml"
APP_PASSWORD = "molecule-app-password-0123"
RO_PASSWORD = "molecule-ro-password-0123"


def psql_tcp(host, sql, user="tsh_erp", password=APP_PASSWORD, address="127.0.0.1", db="tsh_erp"):
    """Run sql as user over TCP with a password; return the command result."""
    conninfo = f"host={address} port=5432 dbname={db} user={user} connect_timeout=5"
    return host.run(
        f"PGPASSWORD={shlex.quote(password)} psql {shlex.quote(conninfo)} -AXqt -v ON_ERROR_STOP=1 -c {shlex.quote(sql)}"
    )


def psql_admin(host, sql, db="postgres"):
    """Run sql as the postgres superuser over the local socket (peer)."""
    return host.check_output(f"runuser -u postgres -- psql -d {db} -AXqt -c {shlex.quote(sql)}")


def state(host):
    """What a failed run must not change: the config files and the server's start time."""
    return (
        host.check_output("cat /etc/postgresql/*/main/pg_hba.conf /etc/postgresql/*/main/conf.d/*.conf | sha256sum"),
        psql_admin(host, "SELECT pg_postmaster_start_time()"),
    )


_RUNS = {}


def apply_once(name, extra, probe=state):
    """Run the role once on every target with extra vars (both releases in one run, so the slow part
    is paid once). Testinfra runs all tests of one target before the next, so what a test checks is
    probed on each target just before and just after the run: return (run, before, after) where
    before and after map each target's name to probe(target)."""
    if name not in _RUNS:
        targets = testinfra.get_hosts(["ansible://targets"], ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])
        before = {target.backend.get_hostname(): probe(target) for target in targets}
        run = run_playbook(APPLY, "-e", json.dumps(extra))
        after = {target.backend.get_hostname(): probe(target) for target in targets}
        _RUNS[name] = (run, before, after)
    return _RUNS[name]


def start_time(host):
    return psql_admin(host, "SELECT pg_postmaster_start_time()")


def test_distribution_version(host):
    expected = {"bookworm": "15", "trixie": "17"}[host.system_info.codename]
    assert psql_admin(host, "SHOW server_version").startswith(expected + ".")


def test_app_role_logs_in_over_tcp_with_its_password(host):
    run = psql_tcp(host, "SELECT current_user || ' ' || current_database() || ' ' || host(inet_server_addr())")
    assert run.rc == 0, run.stderr
    assert run.stdout.split() == ["tsh_erp", "tsh_erp", "127.0.0.1"]


def test_app_role_owns_its_database_and_can_create_tables(host):
    run = psql_tcp(host, "CREATE TABLE IF NOT EXISTS t_probe (id int); DROP TABLE t_probe; "
                   "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()")
    assert run.rc == 0, run.stderr
    assert run.stdout.strip() == "tsh_erp"


def test_wrong_password_is_refused(host):
    run = psql_tcp(host, "SELECT 1", password="not-the-password")
    assert run.rc != 0
    assert 'password authentication failed for user "tsh_erp"' in run.stderr


def test_password_stored_as_scram(host):
    assert psql_admin(host, "SHOW password_encryption") == "scram-sha-256"
    assert psql_admin(host, "SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = 'tsh_erp'") == "t"


def test_superuser_over_tcp_is_refused(host):
    run = psql_tcp(host, "SELECT 1", user="postgres", password="anything", db="postgres")
    assert run.rc != 0
    assert 'pg_hba.conf rejects connection for host' in run.stderr


def test_other_databases_refused_to_the_app_role(host):
    run = psql_tcp(host, "SELECT 1", db="postgres")
    assert run.rc != 0
    assert "no pg_hba.conf entry" in run.stderr


def test_listens_on_loopback_only(host):
    listeners = host.check_output("ss -Htln 'sport = :5432'").splitlines()
    local = sorted(line.split()[3] for line in listeners)
    assert local and set(local) <= {"127.0.0.1:5432", "[::1]:5432"}, local


def test_unreachable_from_the_network(host):
    """The container's own network address and an outside client both find the port closed."""
    address = container_ip(host.backend.get_hostname())
    assert host.run(f"timeout 3 bash -c 'exec 3<>/dev/tcp/{address}/5432'").rc != 0
    assert not tcp_open(outside_host("client"), address, 5432)
    assert tcp_open(host, "127.0.0.1", 5432)


def test_extensions_exist_and_work(host):
    run = psql_tcp(host, "SELECT string_agg(extname, ',' ORDER BY extname) FROM pg_extension "
                   "WHERE extname IN ('pg_trgm', 'unaccent')")
    assert run.stdout.strip() == "pg_trgm,unaccent", run.stderr
    run = psql_tcp(host, "SELECT unaccent('Crème brûlée'), similarity('tsh', 'tsh')")
    assert run.stdout.strip() == "Creme brulee|1", run.stderr


def test_readonly_role_reads_but_cannot_write(host):
    setup = psql_tcp(host, "DROP TABLE IF EXISTS ro_probe; CREATE TABLE ro_probe (v text); INSERT INTO ro_probe VALUES ('x')")
    assert setup.rc == 0, setup.stderr
    read = psql_tcp(host, "SELECT v FROM ro_probe", user="tsh_erp_ro", password=RO_PASSWORD)
    assert read.rc == 0, read.stderr
    assert read.stdout.strip() == "x"
    write = psql_tcp(host, "INSERT INTO ro_probe VALUES ('y')", user="tsh_erp_ro", password=RO_PASSWORD)
    assert write.rc != 0
    assert "permission denied" in write.stderr
    psql_tcp(host, "DROP TABLE ro_probe")


def test_memory_and_connections_sized_for_4gb(host):
    settings = dict(
        line.split("|") for line in psql_admin(
            host, "SELECT name, current_setting(name) FROM pg_settings WHERE name IN "
            "('shared_buffers', 'effective_cache_size', 'maintenance_work_mem', 'work_mem', 'max_connections')"
        ).splitlines()
    )
    assert settings == {
        "shared_buffers": "1GB",
        "effective_cache_size": "3GB",
        "maintenance_work_mem": "256MB",
        "work_mem": "10MB",
        "max_connections": "100",
    }
    assert psql_admin(host, "SELECT rolconnlimit FROM pg_roles WHERE rolname = 'tsh_erp'") == "80"


def test_check_mode_on_a_converged_host_changes_nothing(host):
    """--check --diff of the scenario's own converge reports no change and fails nowhere."""
    if "check" not in _RUNS:
        _RUNS["check"] = run_playbook(CONVERGE, "--check", "--diff")
    run = _RUNS["check"]
    assert run.returncode == 0, output(run)[-3000:]
    recap = output(run).split("PLAY RECAP", 1)[1]
    assert recap.split(f"{host.backend.get_hostname()} : ", 1)[1].split()[1] == "changed=0"


def test_capacity_check_fails_before_any_change(host):
    """The old setup (5 workers x (20 + 10) x 2 colours) is refused with the arithmetic shown."""
    run, before, after = apply_once("capacity", {"postgres_app_workers": 5, "postgres_app_pool_size": 20,
                                                 "postgres_app_max_overflow": 10, "postgres_max_connections": 150})
    assert run.returncode != 0
    text = output(run)
    assert "connection capacity exceeded" in text
    assert "= 300 connections, but max_connections 150" in text
    assert "leaves 137" in text
    assert "changed=0" in text
    name = host.backend.get_hostname()
    assert after[name] == before[name]


def test_bad_pg_hba_rule_is_rolled_back(host):
    """A rule PostgreSQL cannot parse puts the old files back; the server keeps its rules and logins."""
    bad = {"type": "host", "database": "tsh_erp", "user": "tsh_erp", "address": "127.0.0.1/32",
           "method": "scram-sha-256", "options": "bogus=1"}
    run, before, after = apply_once(
        "bad_hba", {"postgres_hba_extra_rules": [bad]}, probe=lambda h: (state(h), psql_tcp(h, "SELECT 1").rc)
    )
    assert run.returncode != 0
    text = output(run)
    assert "postgres rejected the new configuration, so it was not applied: the previous files are back in place" in text
    assert "pg_hba.conf line" in text and "bogus" in text
    name = host.backend.get_hostname()
    assert after[name] == before[name]
    assert after[name][1] == 0


def test_reloadable_setting_does_not_restart(host):
    run, before, after = apply_once(
        "reload", {"postgres_settings": {"log_min_duration_statement": "750ms"}},
        probe=lambda h: (start_time(h), psql_admin(h, "SHOW log_min_duration_statement")),
    )
    assert run.returncode == 0, output(run)[-3000:]
    name = host.backend.get_hostname()
    assert after[name] == (before[name][0], "750ms")


def test_setting_that_needs_a_restart_restarts(host):
    run, before, after = apply_once(
        "restart", {"postgres_settings": {"max_files_per_process": 1200}},
        probe=lambda h: (start_time(h), psql_admin(h, "SHOW max_files_per_process"), psql_tcp(h, "SELECT 1").rc),
    )
    assert run.returncode == 0, output(run)[-3000:]
    name = host.backend.get_hostname()
    assert before[name][1] == "1000"
    assert after[name][0] != before[name][0]
    assert after[name][1:] == ("1200", 0)


def test_separate_database_host_mode_listens_privately_and_reverts(host):
    """With a private listen address and one app network, the outside client reaches the port, pg_hba
    admits that network by TLS only, the host's own address is refused; back to defaults, loopback only.
    Both runs cover every target at once, and the second restores the converged state."""
    if "private" not in _RUNS:
        targets = testinfra.get_hosts(["ansible://targets"], ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])
        client = outside_host("client")
        client_ip = container_ip(f"{scenario_name()}-outside-client")

        def probe(t):
            ip = container_ip(t.backend.get_hostname())
            return {
                "listeners": sorted(line.split()[3] for line in t.check_output("ss -Htln 'sport = :5432'").splitlines()),
                "client_reaches": tcp_open(client, ip, 5432),
                "own_address_login": psql_tcp(t, "SELECT 1", address=ip).stderr,
                "hba_client": psql_admin(t, f"SELECT type FROM pg_hba_file_rules WHERE address = '{client_ip}'"),
            }

        addresses = {t.backend.get_hostname(): container_ip(t.backend.get_hostname()) for t in targets}
        private = run_playbook(
            APPLY, "-e", json.dumps({"postgres_app_networks": [f"{client_ip}/32"]}),
            "-e", '{"postgres_listen_addresses": ["{{ tsh_test_addresses[inventory_hostname] }}"]}',
            "-e", json.dumps({"tsh_test_addresses": addresses}),
        )
        during = {t.backend.get_hostname(): probe(t) for t in targets}
        back = run_playbook(APPLY)
        after = {t.backend.get_hostname(): probe(t) for t in targets}
        _RUNS["private"] = (private, during, back, after, addresses)
    private, during, back, after, addresses = _RUNS["private"]
    name = host.backend.get_hostname()
    assert private.returncode == 0, output(private)[-3000:]
    assert during[name]["listeners"] == sorted(["127.0.0.1:5432", f"{addresses[name]}:5432"])
    assert during[name]["client_reaches"]
    assert set(during[name]["hba_client"].splitlines()) == {"hostssl"}  # app and read-only role
    assert "no pg_hba.conf entry" in during[name]["own_address_login"]
    assert back.returncode == 0, output(back)[-3000:]
    assert after[name]["listeners"] == ["127.0.0.1:5432"]
    assert not after[name]["client_reaches"]
    assert after[name]["hba_client"] == ""


def test_server_is_sandboxed(host):
    """systemd-analyze security 5.0 or lower (9.6 as the distribution ships it), and the running
    server was started under the sandbox (no new privileges)."""
    unit = host.check_output("systemctl list-units --plain --no-legend 'postgresql@*' | cut -d' ' -f1")
    overall = host.check_output(f"systemd-analyze security --no-pager {unit} | tail -n 1")
    assert float(overall.rsplit(": ", 1)[1].split()[0]) <= 5.0, overall
    pid = host.check_output(f"systemctl show -p MainPID --value {unit}")
    assert "NoNewPrivs:\t1" in host.file(f"/proc/{pid}/status").content_string
