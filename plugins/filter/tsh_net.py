"""Address filters the roles share (ufw, postgres); standard library only, no netaddr needed."""

from __future__ import annotations

import ipaddress

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


class FilterModule:
    """tsh address filters."""

    def filters(self):
        return {
            "tsh_invalid_networks": tsh_invalid_networks,
            "tsh_invalid_private_addresses": tsh_invalid_private_addresses,
            "tsh_address_in_networks": tsh_address_in_networks,
        }
