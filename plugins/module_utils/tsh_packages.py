"""Which of some Debian packages are installed, read from dpkg's status database.

Used by the tsh_packages module, which lets its action plugin skip the apt module (and its cache
load, about half a second a call) when every wanted package is already installed. Only plain
package names can be answered here; anything else (a version, a wildcard, an architecture, a
.deb path) is left to apt. Unit tests: tests/unit/test_packages.py."""

from __future__ import annotations

import re

STATUS_FILE = "/var/lib/dpkg/status"

# A Debian package name (Debian Policy 5.6.1): lower case letters, digits, + - . ; at least two
# characters, starting with a letter or digit.
_PLAIN = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")


def installed(status_text: str) -> set[str]:
    """The names whose status is "install ok installed" in dpkg's status file text.

    A package held (hold) or half-configured is not "installed" here: apt decides what to do."""
    names, name, status = set(), None, None
    for line in status_text.splitlines() + [""]:
        if not line.strip():
            if name and status == "install ok installed":
                names.add(name)
            name, status = None, None
        elif line.startswith("Package:"):
            name = line.split(":", 1)[1].strip()
        elif line.startswith("Status:"):
            status = " ".join(line.split(":", 1)[1].split())
    return names


def check(wanted: list[str], status_text: str) -> dict:
    """Split the wanted names: those installed, those missing, and those only apt can judge."""
    have = installed(status_text)
    plain = [n for n in wanted if _PLAIN.match(n)]
    return {
        "installed": [n for n in plain if n in have],
        "missing": [n for n in plain if n not in have],
        "unknown": [n for n in wanted if not _PLAIN.match(n)],
    }
