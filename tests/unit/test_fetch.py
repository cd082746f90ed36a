"""The input resolver: SSRF guard, pinned connections, redirects, caps and errors, against a real
HTTP server on loopback. Nothing here leaves the machine: refused URLs are refused before connecting."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from reelforge.config import Settings
from reelforge.errors import InputError, UrlNotAllowed
from reelforge.ops.context import Resolver
from reelforge.storage import LocalStorage
from reelforge.storage.fetch import make_resolver
from reelforge.storage.urlguard import check_resolved_host

PAYLOAD = bytes(range(256)) * 64  # 16 KiB


@dataclass
class Origin:
    """A loopback HTTP server that records every request it gets."""

    port: int
    seen: list[tuple[str, str]] = field(default_factory=list)  # (path, Host header)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    @property
    def paths(self) -> list[str]:
        return [p for p, _ in self.seen]


def _handler(origin: Origin) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # a body without Content-Length simply ends at close

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            origin.seen.append((self.path, self.headers.get("Host", "")))
            path = urlsplit(self.path).path
            if path.startswith("/media/"):
                self._reply(200, PAYLOAD, {"Content-Length": str(len(PAYLOAD)), "Content-Type": "video/mp4"})
            elif path == "/typed":
                self._reply(200, b"RIFF", {"Content-Type": "audio/wav"})
            elif path == "/endless":  # no Content-Length: only counting can stop it
                self.send_response(200)
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # we hang up early
                    for _ in range(64):
                        self.wfile.write(b"\0" * 1024)
            elif path == "/overlong":  # declares 100 bytes, sends 20000
                self._reply(200, b"o" * 20_000, {"Content-Length": "100"})
            elif path == "/huge-declared":
                self._reply(200, b"tiny", {"Content-Length": str(10**12)})
            elif path == "/redirect":
                target = urlsplit(self.path).query.removeprefix("to=")
                self._reply(302, b"", {"Location": target})
            elif path == "/loop":
                self._reply(301, b"", {"Location": "/loop"})
            elif path == "/slow":
                time.sleep(2)
                self._reply(200, b"late", {})
            else:
                self._reply(404, b"not here", {})

        def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(body)

    return Handler


@pytest.fixture
def origin() -> Iterator[Origin]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    state = Origin(port=server.server_address[1])
    server.RequestHandlerClass = _handler(state)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    folder = tmp_path / "inputs"
    folder.mkdir()
    return folder


def resolver(settings: Settings, **updates: object) -> Resolver:
    configured = settings.replace(**updates)
    return make_resolver(configured, LocalStorage(configured.storage_dir), lookup_file=lambda _id: None)


def only_this_origin(origin: Origin) -> Callable[[str], list[str]]:
    """The real guard (private addresses refused), except that this test's own server is allowed."""

    def guard(url: str) -> list[str]:
        if urlsplit(url).netloc == f"127.0.0.1:{origin.port}":
            return ["127.0.0.1"]
        return check_resolved_host(url, allow_private=False)

    return guard


# ---- the SSRF guard


@pytest.mark.parametrize("host", [
    "127.0.0.1", "localhost", "127.1", "2130706433", "0x7f.1", "0x7f000001", "017700000001", "0.0.0.0",
    "10.0.0.5", "172.16.3.4", "192.168.1.1", "100.64.0.1", "169.254.169.254", "metadata.google.internal",
    "[::1]", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[::ffff:169.254.169.254]", "[fe80::1]", "[fd00::1]",
    "[::]", "app.localhost",
])
def test_private_and_loopback_hosts_are_refused(settings: Settings, origin: Origin, dest: Path,
                                                host: str) -> None:
    with pytest.raises(UrlNotAllowed):
        resolver(settings)(f"http://{host}:{origin.port}/media/clip.mp4", dest)
    assert origin.seen == []  # refused before any connection
    assert list(dest.iterdir()) == []


@pytest.mark.parametrize("ref", [
    "ftp://example.com/a.mp4", "file:///etc/passwd", "gopher://example.com/", "/etc/passwd",
    "data:video/mp4;base64,AAAA", "file_123", "file_" + "G" * 32, "javascript:alert(1)", "",
])
def test_other_references_are_invalid(settings: Settings, dest: Path, ref: str) -> None:
    with pytest.raises(InputError) as refused:
        resolver(settings)(ref, dest)
    assert refused.value.code == "input_invalid"


@pytest.mark.parametrize("url", ["http://example.com:99999/x", "http://a..b/x.mp4"])
def test_malformed_urls_are_invalid(settings: Settings, dest: Path, url: str) -> None:
    with pytest.raises(InputError) as refused:
        resolver(settings)(url, dest)
    assert refused.value.code == "input_invalid"


def test_step_refs_belong_to_pipelines(settings: Settings, dest: Path) -> None:
    with pytest.raises(InputError) as refused:
        resolver(settings)("step://tts/audio", dest)
    assert refused.value.code == "input_invalid" and "pipeline" in refused.value.message


def test_credentials_in_urls_are_refused(settings: Settings, dest: Path) -> None:
    with pytest.raises(UrlNotAllowed):
        resolver(settings, fetch_allow_private=True)("http://user:pw@127.0.0.1:1/x.mp4", dest)


@pytest.mark.parametrize("target", [
    "http://localhost:{port}/media/secret.mp4",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]:{port}/media/secret.mp4",
    "http://2130706433:{port}/media/secret.mp4",
    "file:///etc/passwd",
    "ftp://127.0.0.1/x",
])
def test_redirects_to_private_hosts_are_refused(settings: Settings, origin: Origin, dest: Path,
                                                target: str) -> None:
    start = origin.url(f"/redirect?to={target.format(port=origin.port)}")
    fetch = make_resolver(settings, LocalStorage(settings.storage_dir), lookup_file=lambda _id: None,
                          guard=only_this_origin(origin))
    with pytest.raises(UrlNotAllowed) as refused:
        fetch(start, dest)
    assert "redirected" in refused.value.message
    assert origin.paths == [urlsplit(start).path + "?" + urlsplit(start).query]  # the hop was never made
    assert list(dest.iterdir()) == []


# ---- real downloads (private addresses allowed, as in local development)


def test_download_from_loopback(settings: Settings, origin: Origin, dest: Path) -> None:
    path = resolver(settings, fetch_allow_private=True)(origin.url("/media/clip.mp4?sig=abc"), dest)
    assert path.parent == dest and path.suffix == ".mp4" and path.name.startswith("clip-")
    assert path.read_bytes() == PAYLOAD
    assert [p.name for p in dest.iterdir()] == [path.name]  # no temp file left


def test_connection_goes_to_the_checked_address_not_a_new_lookup(settings: Settings, origin: Origin,
                                                                 dest: Path) -> None:
    """Pinning: the name below does not resolve at all; the download works only because the fetcher
    connects to the address the guard approved, and the server still sees the original Host."""
    url = f"http://media.rebind.invalid:{origin.port}/media/pinned.mp4"
    fetch = make_resolver(settings, LocalStorage(settings.storage_dir), lookup_file=lambda _id: None,
                          guard=lambda _url: ["127.0.0.1"])
    assert fetch(url, dest).read_bytes() == PAYLOAD
    assert origin.seen == [("/media/pinned.mp4", f"media.rebind.invalid:{origin.port}")]


def test_localhost_name_resolves_and_downloads(settings: Settings, origin: Origin, dest: Path) -> None:
    path = resolver(settings, fetch_allow_private=True)(origin.url("/media/a.mp4", host="localhost"), dest)
    assert path.read_bytes() == PAYLOAD


def test_allowed_redirects_are_followed(settings: Settings, origin: Origin, dest: Path) -> None:
    fetch = resolver(settings, fetch_allow_private=True)
    path = fetch(origin.url("/redirect?to=/media/final.mov"), dest)
    assert path.suffix == ".mov" and path.read_bytes() == PAYLOAD
    assert origin.paths == ["/redirect?to=/media/final.mov", "/media/final.mov"]


def test_redirect_loops_stop(settings: Settings, origin: Origin, dest: Path) -> None:
    with pytest.raises(InputError) as failed:
        resolver(settings, fetch_allow_private=True)(origin.url("/loop"), dest)
    assert failed.value.code == "input_fetch_failed"
    assert len(origin.seen) == 6  # the first request and five redirects


def test_file_name_is_sanitised_and_typed(settings: Settings, origin: Origin, dest: Path) -> None:
    fetch = resolver(settings, fetch_allow_private=True)
    weird = fetch(origin.url("/media/..%2F..%2Fevil%20name%3B.MP4"), dest)
    assert weird.parent == dest and weird.suffix == ".mp4" and "/" not in weird.name
    typed = fetch(origin.url("/typed"), dest)
    assert typed.suffix == ".wav"  # no suffix in the URL: taken from Content-Type


def test_byte_cap_without_content_length(settings: Settings, origin: Origin, dest: Path) -> None:
    with pytest.raises(InputError) as too_big:
        resolver(settings, fetch_allow_private=True, max_fetch_bytes=10_000)(origin.url("/endless"), dest)
    assert too_big.value.code == "input_too_large"
    assert list(dest.iterdir()) == []


def test_declared_size_over_cap_is_refused(settings: Settings, origin: Origin, dest: Path) -> None:
    with pytest.raises(InputError) as too_big:
        resolver(settings, fetch_allow_private=True)(origin.url("/huge-declared"), dest)
    assert too_big.value.code == "input_too_large"
    assert list(dest.iterdir()) == []


def test_http_error_status(settings: Settings, origin: Origin, dest: Path) -> None:
    with pytest.raises(InputError) as failed:
        resolver(settings, fetch_allow_private=True)(origin.url("/nothing.mp4?token=secret"), dest)
    assert failed.value.code == "input_fetch_failed"
    assert "404" in failed.value.message and "secret" not in failed.value.message


def test_unreachable_and_slow_hosts(settings: Settings, origin: Origin, dest: Path) -> None:
    with socket.socket() as probe:  # a port with nobody listening
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with pytest.raises(InputError) as refused:
        resolver(settings, fetch_allow_private=True)(f"http://127.0.0.1:{closed_port}/x.mp4", dest)
    assert refused.value.code == "input_unreachable"
    with pytest.raises(InputError) as slow:
        resolver(settings, fetch_allow_private=True, fetch_timeout_s=0.3)(origin.url("/slow"), dest)
    assert slow.value.code == "input_unreachable"


# ---- uploaded file ids


def test_file_ids_resolve_through_storage(settings: Settings, tmp_path: Path, dest: Path) -> None:
    storage = LocalStorage(settings.storage_dir)
    storage.put_stream([b"uploaded bytes"], "files/tenant-a/file_1/voice.wav", max_bytes=100)
    known = "file_" + "0123456789abcdef" * 2
    dangling = "file_" + "f" * 32
    keys = {known: "files/tenant-a/file_1/voice.wav", dangling: "files/tenant-a/gone.wav"}
    fetch = make_resolver(settings, storage, lookup_file=keys.get)
    path = fetch(known, dest)
    assert path == dest / f"{known}.wav" and path.read_bytes() == b"uploaded bytes"

    unknown = "file_" + "e" * 32  # unknown, or another tenant's: lookup_file answers None
    with pytest.raises(InputError) as not_mine:
        fetch(unknown, dest)
    with pytest.raises(InputError) as missing:
        fetch(dangling, dest)
    assert not_mine.value.code == missing.value.code == "input_not_found"
    assert not_mine.value.message.replace(unknown, "ID") == missing.value.message.replace(dangling, "ID")


def test_content_length_is_the_most_that_is_read(settings: Settings, origin: Origin, dest: Path) -> None:
    """A server that sends more than it declared cannot push extra bytes into the input."""
    path = resolver(settings, fetch_allow_private=True, max_fetch_bytes=10_000)(origin.url("/overlong"), dest)
    assert path.stat().st_size == 100


# ---- https: pinning to the checked address keeps certificate checks on the name


@dataclass
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


def make_tls(folder: Path, name: str) -> TlsFiles:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "reelforge test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(hours=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    files = TlsFiles(ca=folder / "ca.pem", cert=folder / "cert.pem", key=folder / "key.pem")
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    return files


def test_https_is_pinned_with_sni_and_certificate_checked_against_the_name(tmp_path: Path, dest: Path) -> None:
    import ssl

    import httpx

    from reelforge.storage.fetch import UrlFetcher

    tls = make_tls(tmp_path, "media.test")
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tls.cert, tls.key)
    sni_seen: list[str | None] = []

    def record_sni(_sock: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        sni_seen.append(server_name)

    server_ctx.sni_callback = record_sni  # type: ignore[assignment]
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    state = Origin(port=server.server_address[1])
    server.RequestHandlerClass = _handler(state)
    server.daemon_threads = True
    server.socket = server_ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        client_ctx = ssl.create_default_context(cafile=str(tls.ca))
        fetcher = UrlFetcher(max_bytes=10**6, timeout_s=5, guard=lambda _url: ["127.0.0.1"],
                             transport=httpx.HTTPTransport(verify=client_ctx))
        path = fetcher.fetch(f"https://media.test:{state.port}/media/secure.mp4", dest)
        assert path.read_bytes() == PAYLOAD
        assert sni_seen == ["media.test"] and state.seen == [("/media/secure.mp4", f"media.test:{state.port}")]

        # The same address under a name the certificate does not cover: refused by TLS, not downloaded.
        with pytest.raises(InputError) as mismatch:
            fetcher.fetch(f"https://other.test:{state.port}/media/secure.mp4", dest)
        assert mismatch.value.code == "input_unreachable"
        assert len(state.seen) == 1
    finally:
        server.shutdown()
        server.server_close()
