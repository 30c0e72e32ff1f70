"""The pgbackrest role's shell scripts, rendered as the role renders them, pass shellcheck (the
Makefile's lint checks only committed shell files, not templates)."""

import shlex
import shutil
import subprocess

import jinja2
import pytest

from conftest import REPO

TEMPLATES = REPO / "roles/pgbackrest/templates"
SCRIPTS = ["tsh-pgbackrest-alert.sh.j2", "tsh-pgbackrest-archive-check.sh.j2", "tsh-pgbackrest-restore-check.sh.j2"]
VARS = {
    "ansible_managed": "Ansible managed",
    "pgbackrest_alert_command": 'echo "$TSH_FAILED_UNIT failed on $TSH_HOST" | mail -s alert ops@example.com',
    "pgbackrest_stanza": "tsh",
    "postgres_port": 5432,
    "pgbackrest_restore_check_path": "/var/lib/tsh-pgbackrest-check",
    "pgbackrest_restore_check_reserve_mb": 1024,
    "pgbackrest_recovery_wait_s": 600,
}


def render(name):
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True)
    env.filters["comment"] = lambda text: "#\n# " + text + "\n#"
    env.filters["quote"] = lambda value: shlex.quote(str(value))
    return env.get_template(name).render(**VARS)


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_passes_shellcheck(name, tmp_path):
    shellcheck = shutil.which("shellcheck")
    if not shellcheck:
        pytest.skip("shellcheck not on PATH (make setup installs it)")
    script = tmp_path / name.removesuffix(".j2")
    script.write_text(render(name))
    run = subprocess.run([shellcheck, "--shell=bash", str(script)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout
