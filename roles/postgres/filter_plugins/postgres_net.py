"""Address checks for the postgres role's inputs (standard library only)."""

from __future__ import annotations

import ipaddress


def postgres_invalid_addresses(values):
    """Items of values that are not one private IP address: hostnames, '*', 0.0.0.0 and public
    addresses are all refused, so the server is never put on the internet by a listen address."""
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


def postgres_invalid_networks(values):
    """Items of values that are not a CIDR network (or single address)."""
    bad = []
    for value in values or []:
        try:
            ipaddress.ip_network(str(value).strip(), strict=False)
        except ValueError:
            bad.append(value)
    return bad


class FilterModule:
    """postgres role filters."""

    def filters(self):
        return {
            "postgres_invalid_addresses": postgres_invalid_addresses,
            "postgres_invalid_networks": postgres_invalid_networks,
        }
