"""Which URLs we are willing to fetch: http(s) to public addresses only.

Checked twice: the syntax and literal hosts at submit time (`check_url_syntax`, raises ValueError so it
can sit inside a pydantic validator), and every resolved address of every hop at fetch time
(`check_resolved_host`, raises UrlNotAllowed), since DNS can point a public name at a private address.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from reelforge.errors import UrlNotAllowed

_BLOCKED_NAMES = {"localhost", "localhost.localdomain", "metadata.google.internal", "metadata"}


def _ip_is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved
                or ip.is_unspecified or (isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT))


_CGNAT = ipaddress.ip_network("100.64.0.0/10")


def _literal_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a literal host means, including legacy IPv4 forms (2130706433, 0x7f.1, 127.1)."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if all(c in "0123456789abcdefx." for c in host) and any(c.isdigit() for c in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def check_url_syntax(url: str, *, allow_private: bool = False) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError("only http and https URLs can be fetched")
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise ValueError("the URL has no host")
    if parts.username or parts.password:
        raise ValueError("URLs with credentials are not accepted")
    if allow_private:
        return
    if host in _BLOCKED_NAMES or host.endswith(".localhost") or host.endswith(".internal"):
        raise ValueError(f"the host {host!r} is not a public address")
    ip = _literal_ip(host)
    if ip is None:
        return  # a name: resolved and checked at fetch time
    if not _ip_is_public(ip):
        raise ValueError(f"the address {host} is not public (loopback, private, link-local or reserved)")


def check_resolved_host(url: str, *, allow_private: bool = False) -> list[str]:
    """Resolve the URL's host and refuse it unless every address is public. Returns the addresses."""
    try:
        check_url_syntax(url, allow_private=allow_private)
    except ValueError as exc:
        raise UrlNotAllowed(f"URL not allowed: {exc}.") from exc
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UrlNotAllowed(f"The host {host!r} could not be resolved.", code="host_unresolvable") from exc
    addrs = sorted({info[4][0] for info in infos})
    if not allow_private:
        for addr in addrs:
            if not _ip_is_public(ipaddress.ip_address(addr.split("%")[0])):
                raise UrlNotAllowed(f"URL not allowed: {host!r} resolves to a non-public address ({addr}).")
    return addrs
