"""The deploy topology, decided on the controller: which web host serves an app host (nginx's active
link, the deploy lock and the static frontends live there), and the cell of app hosts behind one web
host that a deploy or rollback moves together. Pure functions, standard library only; used by
plugins/filter/tsh_topology.py (tsh_web_host: the deploy role's default deploy_web_host) and
plugins/action/tsh_topology.py (the cell, once per app host at the start of deploy.yml and
rollback.yml); unit tests in tests/unit/test_topology.py.

A cell deploys together: its first app host (in play order) takes the lock and decides the colour,
each app host is prepared in turn (serial: 1), and traffic moves once, after its last."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence


class TopologyError(ValueError):
    """A topology the deploy cannot work with, with the message to show the operator."""


def web_host_of(host: str, groups: Mapping[str, Sequence[str]]) -> str:
    """The web host of `host`: itself when it is in the web group or the inventory has no web group
    (the one droplet), otherwise the first web host (one web host is supported)."""
    web = groups.get("web")
    if web is None or host in web:
        return host
    if not web:
        raise TopologyError(f"The web group is empty, so {host} has no web host: put the web host in it, "
                            "or remove the group (each app host is then its own web host).")
    return web[0]


def web_hosts(hosts: Iterable[str], groups: Mapping[str, Sequence[str]],
              overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """Each host's web host: its own deploy_web_host when set (an inventory override: `overrides`
    holds only the hosts that set it), otherwise web_host_of()."""
    overrides = overrides or {}
    return {host: overrides[host] if host in overrides else web_host_of(host, groups) for host in hosts}


def cell(host: str, web_hosts_by_host: Mapping[str, str], play_hosts: Sequence[str],
         app_group: Sequence[str]) -> dict:
    """The cell of `host`, from every host's web host (web_hosts_by_host covers host, play_hosts and
    app_group):

        web_host        host's web host
        cell            the play's hosts behind that web host, in play order
        cell_inventory  the app group's hosts behind it, in inventory order
        index           host's place in cell (0 for the first)
        first, last     whether host is the cell's first or last
        touched         cell[:index + 1], the app hosts this run has reached when host's turn ends
        complete        whether the run reaches the whole cell (false under a --limit to part of it)
    """
    web_host = web_hosts_by_host[host]
    members = [h for h in play_hosts if web_hosts_by_host[h] == web_host]
    inventory = [h for h in app_group if web_hosts_by_host[h] == web_host]
    if host not in members:
        raise TopologyError(f"{host} is not among the play's hosts ({', '.join(play_hosts)}).")
    index = members.index(host)
    return {
        "web_host": web_host,
        "cell": members,
        "cell_inventory": inventory,
        "index": index,
        "first": index == 0,
        "last": index == len(members) - 1,
        "touched": members[:index + 1],
        "complete": sorted(members) == sorted(inventory),
    }
