"""Nothing secret in the repository unencrypted: every vault.yml except the local stack's throwaway one
is an ansible-vault file."""

import subprocess

from conftest import REPO


def test_committed_vault_files_are_encrypted():
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "*vault.yml"],
                           cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    plain = [f for f in files
             if not f.startswith("inventories/local/")
             and not (REPO / f).read_text(errors="replace").startswith("$ANSIBLE_VAULT;")]
    assert plain == [], f"unencrypted vault files (run ansible-vault encrypt on them): {plain}"
