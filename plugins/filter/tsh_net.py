"""Address filters the roles share (ufw, postgres); standard library only, no netaddr needed."""

from __future__ import annotations

import ipaddress
import shlex

from ansible.errors import AnsibleFilterError


def _network(value):
    try:
        return ipaddress.ip_network(str(value).strip(), strict=False)
    except ValueError as exc:
        raise AnsibleFilterError(f"'{value}' is not an IP address or CIDR network: {exc}") from exc


def tsh_invalid_networks(values):
    """Return the items of values that are not an IP address or CIDR network."""
    bad = []
    for value in values or []:
        try:
            ipaddress.ip_network(str(value).strip(), strict=False)
        except ValueError:
            bad.append(value)
    return bad


def tsh_invalid_private_addresses(values):
    """Items of values that are not one private IP address: hostnames, '*', 0.0.0.0 and public
    addresses are all refused, so a server is never put on the internet by a listen address."""
    bad = []
    for value in values or []:
        try:
            address = ipaddress.ip_address(str(value).strip())
        except ValueError:
            bad.append(value)
            continue
        if address.is_unspecified or not address.is_private:
            bad.append(value)
    return bad


def tsh_address_in_networks(address, networks):
    """True when address lies in any of networks (addresses or CIDRs)."""
    if not address:
        return False
    addr = ipaddress.ip_address(str(address).strip().split("%")[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    return any(addr in _network(net) for net in networks or [])


def tsh_ufw_source(value):
    """One canonical spelling of an address or network, the one ufw stores for it.

    203.0.113.10/32 -> 203.0.113.10, 192.0.2.77/24 -> 192.0.2.0/24 (host bits cleared),
    2001:DB8:0::1/128 -> 2001:db8::1. 'any' stays 'any'.
    """
    text = str(value).strip()
    if text == "any":
        return text
    net = _network(text)
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return str(net)


def _rule_key(line):
    """A rule line of `ufw show added` as a comparable tuple: addresses after `from`/`to`
    are read as networks, so two spellings of one network compare equal."""
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


def tsh_ufw_stale_rules(added, wanted):
    """The lines of `ufw show added` (added) that no wanted rule line matches.

    Both sides are compared by meaning, not text: ufw rewrites addresses when it stores them
    (drops /32 and /128, clears host bits, lower-cases and shortens IPv6), so a listed source
    written another way must never be taken for a stale rule and deleted.
    """
    wanted_keys = {_rule_key(line) for line in wanted or [] if str(line).strip()}
    return [
        line
        for line in added or []
        if str(line).startswith("ufw ") and _rule_key(line) not in wanted_keys
    ]


class FilterModule:
    """tsh address filters."""

    def filters(self):
        return {
            "tsh_invalid_networks": tsh_invalid_networks,
            "tsh_invalid_private_addresses": tsh_invalid_private_addresses,
            "tsh_address_in_networks": tsh_address_in_networks,
            "tsh_ufw_source": tsh_ufw_source,
            "tsh_ufw_stale_rules": tsh_ufw_stale_rules,
        }
