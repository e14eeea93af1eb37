"""Which addresses and Host names count as loopback, and whether a bind is safe.

This module owns the address rules that the server's security middleware and the client
share: `is_loopback_address` (localhost, 127.0.0.0/8, ::1), `parse_host` for Host header
values (DNS rebinding, security.md §1.5), the parsing of a ComfyUI-style `--listen` list, and
`check_bind`, the bind policy that refuses to serve a non-loopback address without
authentication (security.md §1.6). It also defines `SecurityError`, which server/security.py
raises too and re-exports as part of its API.

Standard library only (psutil, imported lazily, lists this machine's interface addresses for a
wildcard bind): it never imports aiohttp, torch or the engine, so server/client.py can use the
loopback rule without pulling in the server. No module-level mutable state.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence


class SecurityError(RuntimeError):
    """The server would start in an unsafe configuration."""


# --------------------------------------------------------------------------- loopback and Host names


def _bare_host(address: str) -> str:
    """Lowercase, without IPv6 brackets or a trailing root dot: the form parse_host returns."""
    host = address.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host.rstrip(".")


def is_loopback_address(address: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1 (bracketed or not, IPv4-mapped included)."""
    host = _bare_host(address)
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def parse_host(value: str) -> tuple[str, int | None] | None:
    """Split a Host header ("name", "name:port", "[v6]:port") into (lowercased host, port).

    Returns None for anything malformed, which callers treat as not allowed.
    """
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        host, rest = value[1:end], value[end + 1 :]
        if rest and not rest.startswith(":"):
            return None
        port_text = rest[1:] if rest else None
    elif value.count(":") == 1:
        host, port_text = value.split(":")
    elif ":" in value:
        return None  # an IPv6 literal without brackets is not a valid Host
    else:
        host, port_text = value, None
    host = host.rstrip(".")  # "localhost." names the same host as "localhost"
    if not host:
        return None
    if port_text is None:
        return host, None
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        return None
    return host, int(port_text)


def _normalise_host_entry(entry: str) -> str:
    parsed = parse_host(entry)
    if parsed is None:
        raise SecurityError(f"allowed host {entry!r} is not a host name or address")
    return parsed[0]


# --------------------------------------------------------------------------- listen addresses and the bind policy


def _as_address_list(listen: Sequence[str] | str) -> tuple[str, ...]:
    # ComfyUI's --listen takes "0.0.0.0,::"; accept that spelling as well as a list.
    if isinstance(listen, str):
        listen = listen.split(",")
    return tuple(address.strip() for address in listen)


def _is_wildcard_address(address: str) -> bool:
    host = address.strip().strip("[]")
    if not host:
        return True  # aiohttp treats an empty host as every interface
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def machine_addresses() -> frozenset[str]:
    """This machine's own interface addresses (IPv4 and IPv6, zone ids dropped), as Host names.

    A server bound to 0.0.0.0 or :: answers on each of them; an IP literal cannot be rebound to
    another site, so accepting them as Host keeps the DNS-rebinding defence intact.
    """
    import psutil

    found = set()
    for entries in psutil.net_if_addrs().values():
        for entry in entries:
            address = entry.address.split("%", 1)[0]
            if _is_ip_literal(address):
                found.add(_bare_host(address))
    return frozenset(found)


def check_bind(listen: list[str], token: str | None, insecure_no_auth: bool) -> None:
    """Raise SecurityError if a non-loopback address would be served without authentication."""
    addresses = _as_address_list(listen)
    if not addresses:
        raise SecurityError("no listen address given; the default is 127.0.0.1")
    exposed = [address or "<all interfaces>" for address in addresses if not is_loopback_address(address)]
    if exposed and not token and not insecure_no_auth:
        raise SecurityError(
            f"refusing to listen on {', '.join(exposed)} without authentication: anyone who can reach "
            "that address could run workflows and code on this machine. Set an auth token, or pass the "
            "insecure-no-auth flag if the network is trusted, or listen on 127.0.0.1 only."
        )
