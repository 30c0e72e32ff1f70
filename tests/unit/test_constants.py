"""Values several roles share have one home, roles/tsh/defaults/main.yml: no role default,
playbook or molecule converge writes one of them as a literal (a copy that would drift), the roles
that need them read them from there, and the deploy's copy of the backup timers' names matches the
backups role."""

import pathlib
import re

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
DEFAULTS = yaml.safe_load((REPO / "roles/tsh/defaults/main.yml").read_text())

# The shared values as literals, and where they may be written: the home itself, comments, docs.
LITERALS = [
    r"\b8001\b", r"\b8002\b", r"\b8099\b", r"tsh_erp_active\.conf", r"/etc/nginx/upstreams\b",
    r"/etc/ssl/tsh/fullchain\.pem", r"/etc/ssl/tsh/privkey\.pem",
]


def _code_lines(path):
    for number, line in enumerate(path.read_text().splitlines(), 1):
        code = line.split(" #", 1)[0] if not line.lstrip().startswith("#") else ""
        if code.strip():
            yield number, code


def _scanned():
    files = [*REPO.glob("roles/*/defaults/main.yml"), *REPO.glob("roles/*/vars/*.yml"),
             *REPO.glob("playbooks/*.yml"), *REPO.glob("playbooks/tasks/*.yml")]
    return [f for f in files if f.relative_to(REPO).parts[:2] != ("roles", "tsh")]


def test_the_home_holds_each_value():
    assert DEFAULTS["tsh_color_ports"] == {"blue": 8001, "green": 8002}
    assert DEFAULTS["tsh_preview_port"] == 8099
    assert DEFAULTS["tsh_active_link"] == "{{ tsh_upstream_dir }}/{{ tsh_upstream_name }}_active.conf"
    assert DEFAULTS["tsh_certificate"].endswith("fullchain.pem")


@pytest.mark.parametrize("pattern", LITERALS)
def test_no_role_or_playbook_copies_a_shared_value(pattern):
    copies = [f"{path.relative_to(REPO)}:{number}: {code.strip()}"
              for path in _scanned() for number, code in _code_lines(path) if re.search(pattern, code)]
    assert not copies, "write the tsh role's variable instead of the value:\n" + "\n".join(copies)


@pytest.mark.parametrize(("role", "setting", "source"), [
    ("tsh_app", "tsh_app_colors", "tsh_color_ports"),
    ("tsh_app", "tsh_app_nginx_active_link", "tsh_active_link"),
    ("nginx", "nginx_preview_port", "tsh_preview_port"),
    ("nginx", "nginx_upstream_dir", "tsh_upstream_dir"),
    ("nginx", "nginx_upstream_name", "tsh_upstream_name"),
    ("nginx", "nginx_ssl_certificate", "tsh_certificate"),
    ("nginx", "nginx_ssl_certificate_key", "tsh_certificate_key"),
    ("acme_sh", "acme_sh_fullchain_file", "tsh_certificate"),
    ("acme_sh", "acme_sh_key_file", "tsh_certificate_key"),
    ("status", "status_certificate", "tsh_certificate"),
    ("deploy", "deploy_preview_port", "tsh_preview_port"),
    ("deploy", "deploy_active_link", "tsh_active_link"),
    ("deploy", "deploy_ports", "tsh_color_ports"),
])
def test_each_role_reads_the_home(role, setting, source):
    value = yaml.safe_load((REPO / f"roles/{role}/defaults/main.yml").read_text())[setting]
    assert source in str(value), f"{role}'s {setting} should default to {source}, not {value!r}"


def test_every_play_that_runs_a_reading_role_lists_the_tsh_role_first():
    readers = {"nginx", "acme_sh", "tsh_app", "status", "deploy"}
    plays = [*REPO.glob("playbooks/*.yml"), *REPO.glob("molecule/*/converge.yml"), *REPO.glob("tests/molecule/*/*.yml")]
    missing = []
    for path in plays:
        for play in yaml.safe_load(path.read_text()) or []:
            roles = [r["role"] if isinstance(r, dict) else r for r in play.get("roles", []) or []]
            if readers & set(roles) and (not roles or roles[0] != "tsh"):
                missing.append(f"{path.relative_to(REPO)}: {play.get('name')}: {roles}")
    assert not missing, "\n".join(missing)


def test_the_deploy_pauses_the_backups_roles_timers():
    backups = yaml.safe_load((REPO / "roles/backups/vars/main.yml").read_text())
    deploy = yaml.safe_load((REPO / "roles/deploy/vars/main.yml").read_text())
    assert deploy["__deploy_backup_timers"] == [f"{backups['__backups_unit']}.timer",
                                                f"{backups['__backups_verify_unit']}.timer"]
    assert deploy["__deploy_backup_resume_timer"] == f"{backups['__backups_resume_unit']}.timer"
