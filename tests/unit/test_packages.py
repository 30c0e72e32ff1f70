"""Unit tests for plugins/module_utils/tsh_packages.py: reading dpkg's status file and splitting the
wanted names into installed, missing and those only apt can judge."""

import importlib.util
import pathlib

_PATH = pathlib.Path(__file__).resolve().parents[2] / "plugins/module_utils/tsh_packages.py"
_SPEC = importlib.util.spec_from_file_location("tsh_packages", _PATH)
tp = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(tp)

STATUS = """Package: nginx
Status: install ok installed
Priority: optional
Version: 1.22.1-9
Description: small, powerful, scalable web/proxy server
 A continuation line mentioning Package: fake

Package: ufw
Status: deinstall ok config-files
Version: 0.36.2-1

Package: jq
Status: install ok half-configured
Version: 1.6-2.1

Package: libc6
Architecture: amd64
Status: install ok installed
Version: 2.36-9
Package: not-separated
Status: install ok installed
"""


def test_installed_needs_the_full_installed_status():
    have = tp.installed(STATUS)
    assert "nginx" in have
    assert "ufw" not in have  # removed, its configuration kept
    assert "jq" not in have  # half-configured: apt must finish it


def test_a_record_without_a_blank_line_after_it_is_still_read():
    """Records are separated by blank lines; the last one needs none. Two records run together are
    read as one (the later Package line wins), as dpkg would never write them."""
    have = tp.installed(STATUS)
    assert "not-separated" in have
    assert "libc6" not in have


def test_check_splits_installed_missing_and_unknown():
    result = tp.check(["nginx", "ufw", "jq", "python3-psycopg2", "nginx=1.22.1-9", "libc6:amd64", "lib*"], STATUS)
    assert result == {
        "installed": ["nginx"],
        "missing": ["ufw", "jq", "python3-psycopg2"],
        "unknown": ["nginx=1.22.1-9", "libc6:amd64", "lib*"],
    }


def test_check_of_nothing_installed_is_all_missing():
    assert tp.check(["acme.sh", "postgresql-15"], "") == {"installed": [], "missing": ["acme.sh", "postgresql-15"],
                                                          "unknown": []}


def test_real_status_file_when_there_is_one():
    """On a Debian controller the real file parses and lists dpkg itself."""
    status = pathlib.Path(tp.STATUS_FILE)
    if status.exists():
        assert "dpkg" in tp.installed(status.read_text(encoding="utf-8", errors="replace"))
