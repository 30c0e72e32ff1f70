"""The firewall as one wanted state: ufw's rules, default policies, logging and status are read once,
compared by meaning with what the inventory asks for, and only the difference is applied.

Used by plugins/modules/tsh_ufw.py; unit tests in tests/unit/test_ufw.py. Standard library only.
"""

from __future__ import annotations

import ipaddress
import shlex

DEFAULTS_FILE = "/etc/default/ufw"
CONF_FILE = "/etc/ufw/ufw.conf"
# /etc/default/ufw's keys and values, as `ufw default <word> <direction>` writes them.
POLICY_KEYS = {"incoming": "DEFAULT_INPUT_POLICY", "outgoing": "DEFAULT_OUTPUT_POLICY",
               "routed": "DEFAULT_FORWARD_POLICY"}
POLICY_WORDS = {"DROP": "deny", "ACCEPT": "allow", "REJECT": "reject"}
LOG_LEVELS = ("off", "low", "medium", "high", "full")
PROTOCOLS = ("tcp", "udp")


class UfwError(Exception):
    """A wrong input or a ufw command that failed; the message names the fix or the command."""


def source(value):
    """One canonical spelling of an address or network, the one ufw stores for it.

    203.0.113.10/32 -> 203.0.113.10, 192.0.2.77/24 -> 192.0.2.0/24 (host bits cleared),
    2001:DB8:0::1/128 -> 2001:db8::1. 'any' stays 'any'.
    """
    text = str(value).strip()
    if text == "any":
        return text
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        raise UfwError(f"'{value}' is not an IP address or CIDR network: {exc}") from exc
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return str(net)


def rule_line(port, proto, src="any"):
    """An allow rule as `ufw show added` prints it."""
    src = source(src)
    if src == "any":
        return f"ufw allow {port}/{proto}"
    return f"ufw allow from {src} to any port {port} proto {proto}"


def _port(value, what):
    try:
        port = int(str(value).strip())
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        raise UfwError(f"{what}: '{value}' is not a port number (1-65535)")
    return port


def wanted_rules(ssh_port, ssh_sources=(), ssh_from_anywhere=False, open_tcp_ports=(), extra_rules=()):
    """The allow rules the inventory asks for, as rule lines, in the order they are to be added:
    SSH first (from the listed sources, or from anywhere when asked for), then the public ports,
    then the extra rules. Duplicates (two spellings of one network) appear once."""
    ssh_port = _port(ssh_port, "ufw_ssh_port")
    lines = []
    if ssh_from_anywhere:
        lines.append(rule_line(ssh_port, "tcp"))
    else:
        lines.extend(rule_line(ssh_port, "tcp", src) for src in ssh_sources or ())
    lines.extend(rule_line(_port(port, "ufw_open_tcp_ports"), "tcp") for port in open_tcp_ports or ())
    for rule in extra_rules or ():
        if not isinstance(rule, dict) or "port" not in rule:
            raise UfwError(f"ufw_extra_rules: every item needs a port, as {{port: 5432, from: 10.0.0.0/24}}; "
                           f"got {rule!r}")
        proto = str(rule.get("proto") or "tcp")
        if proto not in PROTOCOLS:
            raise UfwError(f"ufw_extra_rules: proto must be tcp or udp, got '{proto}' in {rule!r}")
        lines.append(rule_line(_port(rule["port"], "ufw_extra_rules"), proto, rule.get("from") or "any"))
    unique, seen = [], set()
    for line in lines:
        if rule_key(line) not in seen:
            seen.add(rule_key(line))
            unique.append(line)
    return unique


def rule_key(line):
    """A rule line as a comparable tuple: addresses after `from`/`to` are read as networks, so two
    spellings of one network compare equal."""
    try:
        words = shlex.split(line)
    except ValueError:
        return (line.strip(),)
    key = []
    after_address_word = False
    for word in words:
        if after_address_word and word != "any":
            try:
                word = ipaddress.ip_network(word, strict=False)
            except ValueError:
                pass
        key.append(word)
        after_address_word = word in ("from", "to")
    return tuple(key)


def added_rules(show_added):
    """The rule lines of `ufw show added`'s output (its header and '(None)' are not rules)."""
    return [line.strip() for line in show_added.splitlines() if line.strip().startswith("ufw ")]


def plan_rules(added, wanted):
    """(to_add, to_remove): wanted lines ufw lacks, and lines ufw holds that nothing wanted matches.

    Compared by meaning, not text: ufw rewrites addresses when it stores them (drops /32 and /128,
    clears host bits, lower-cases and shortens IPv6), so a listed source written another way is
    never taken for a stale rule and deleted (which once locked operators out).
    """
    added_keys = {rule_key(line) for line in added}
    wanted_keys = {rule_key(line) for line in wanted}
    return ([line for line in wanted if rule_key(line) not in added_keys],
            [line for line in added if rule_key(line) not in wanted_keys])


def assignments(text):
    """KEY=value lines of a shell-style settings file, quotes removed."""
    values = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip().strip("\"'")
    return values


def policies_of(defaults_text):
    """{'incoming': 'deny', ...} as /etc/default/ufw sets them."""
    values = assignments(defaults_text)
    return {direction: POLICY_WORDS.get(values.get(key, ""), values.get(key, "").lower() or None)
            for direction, key in POLICY_KEYS.items()}


def logging_of(conf_text):
    return assignments(conf_text).get("LOGLEVEL") or None


def active_of(status):
    """Whether `ufw status` says the firewall is running."""
    lines = status.strip().splitlines()
    return bool(lines) and lines[0].strip() == "Status: active"


def _state_text(rules, policies, logging, active):
    lines = list(rules)
    lines += [f"default {policies.get(d)} {d}" for d in POLICY_KEYS]
    lines += [f"logging {logging}", "status " + ("active" if active else "inactive")]
    return "\n".join(lines) + "\n"


def reconcile(run, read, wanted, policies, logging, check=False):
    """Bring ufw to the wanted state with the fewest commands; return what changed.

    run(argv) -> (rc, stdout, stderr); read(path) -> text ('' when missing). Allow rules go in
    first, stale ones go only after the new ones exist, and the policies and the firewall are
    switched on last, so no step of a run closes SSH to a listed source.
    """
    for direction, word in policies.items():
        if direction not in POLICY_KEYS or word not in POLICY_WORDS.values():
            raise UfwError(f"policy '{direction}: {word}': directions are {', '.join(POLICY_KEYS)}, "
                           f"policies allow, deny or reject")
    if logging not in LOG_LEVELS:
        raise UfwError(f"ufw_logging must be one of {', '.join(LOG_LEVELS)}, got '{logging}'")

    def ufw(*args):
        rc, out, err = run(["ufw", *args])
        if rc != 0:
            raise UfwError(f"`ufw {' '.join(args)}` failed (rc {rc}): {(err or out).strip()}")
        return out

    added = added_rules(ufw("show", "added"))
    to_add, to_remove = plan_rules(added, wanted)
    have_policies = policies_of(read(DEFAULTS_FILE))
    have_logging = logging_of(read(CONF_FILE))
    active = active_of(ufw("status"))

    commands = [shlex.split(line)[1:] for line in to_add]
    commands += [["delete", *shlex.split(line)[1:]] for line in to_remove]
    policy_changes = {d: w for d, w in policies.items() if have_policies.get(d) != w}
    commands += [["default", w, d] for d, w in policy_changes.items()]
    if have_logging != logging:
        commands.append(["logging", logging])
    if not active:
        commands.append(["--force", "enable"])
    if not check:
        for argv in commands:
            ufw(*argv)

    after_rules = [line for line in added if line not in to_remove] + to_add
    return {
        "changed": bool(commands),
        "added": to_add,
        "removed": to_remove,
        "policies": policy_changes,
        "logging": logging if have_logging != logging else None,
        "enabled": not active,
        "commands": ["ufw " + shlex.join(argv) for argv in commands],
        "diff": {
            "before": _state_text(added, have_policies, have_logging, active),
            "after": _state_text(after_rules, {**have_policies, **policies}, logging, True),
        },
    }
