"""Outgoing HTTP to an address we have already checked (input downloads and webhooks).

Why: `urlguard.check_resolved_host` resolves a URL's host and refuses it unless every address is
public. If the HTTP client then resolved the name again, a hostile DNS server could answer with a
public address for the check and 127.0.0.1 or 169.254.169.254 for the connection (DNS rebinding).
So we never let httpx resolve names: the request goes to the checked IP literal, the original name is
sent in the Host header and, for https, as the TLS SNI name (httpcore's `sni_hostname` extension), so
virtual hosting works and the certificate is still verified against the name, not the IP. After the
connection is made we also compare the socket's peer address with the address we chose, which catches
anything (a proxy, a transport change) that would route the request elsewhere. Clients used here must
be built with `trust_env=False` so proxy environment variables cannot reroute requests either.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence

import httpx

from reelforge.errors import UrlNotAllowed

MAX_ADDRESSES_TRIED = 3


def build_pinned_request(
    client: httpx.Client, method: str, url: str, addr: str, *,
    headers: Mapping[str, str] | None = None, content: bytes | None = None,
) -> httpx.Request:
    original = httpx.URL(url)
    target = original.copy_with(host=addr.split("%")[0])
    all_headers = {"Host": original.netloc.decode("ascii"), **(headers or {})}
    extensions = {}
    if original.scheme == "https":
        try:
            ipaddress.ip_address(original.host)
        except ValueError:
            extensions["sni_hostname"] = original.host  # a name: verify the certificate against it
    return client.build_request(method, target, headers=all_headers, content=content, extensions=extensions)


def _check_peer(response: httpx.Response, addr: str) -> None:
    stream = response.extensions.get("network_stream")
    peer = stream.get_extra_info("server_addr") if stream is not None else None
    if not peer:
        return  # transports without sockets (tests' MockTransport) have nothing to compare
    if ipaddress.ip_address(str(peer[0]).split("%")[0]) != ipaddress.ip_address(addr.split("%")[0]):
        response.close()
        raise UrlNotAllowed(f"URL not allowed: the connection went to {peer[0]}, not the checked address.")


def send_pinned(client: httpx.Client, method: str, url: str, addrs: Sequence[str], *,
                headers: Mapping[str, str] | None = None, content: bytes | None = None) -> httpx.Response:
    """Send to the first checked address that accepts a connection; the response is streamed (close it).

    Raises httpx.TransportError from the last address tried when none connects.
    """
    if not addrs:
        raise UrlNotAllowed("URL not allowed: its host has no address.")
    last: httpx.TransportError | None = None
    for addr in list(addrs)[:MAX_ADDRESSES_TRIED]:
        request = build_pinned_request(client, method, url, addr, headers=headers, content=content)
        try:
            response = client.send(request, stream=True)
        except httpx.ConnectError as exc:  # try the host's next address (e.g. IPv4 after IPv6)
            last = exc
            continue
        _check_peer(response, addr)
        return response
    assert last is not None
    raise last
