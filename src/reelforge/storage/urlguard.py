"""Which URLs we are willing to fetch: http(s) to public addresses only.

Checked twice: the syntax and literal hosts at submit time (`check_url_syntax`, part of the reference
grammar in reelforge/refs.py; raises ValueError so it can sit inside a pydantic validator), and every
resolved address of every hop at fetch time (`check_resolved_host`, raises UrlNotAllowed), since DNS can
point a public name at a private address.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from reelforge.errors import UrlNotAllowed
from reelforge.refs import check_url_syntax, ip_is_public

__all__ = ["check_resolved_host", "check_url_syntax"]

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
    addrs = sorted({str(info[4][0]) for info in infos})
    if not allow_private:
        for addr in addrs:
            if not ip_is_public(ipaddress.ip_address(addr.split("%")[0])):
                raise UrlNotAllowed(f"URL not allowed: {host!r} resolves to a non-public address ({addr}).")
    return addrs
