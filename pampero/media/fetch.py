"""Fetching remote images without becoming a proxy into the server's network.

One ``Fetcher`` lives as long as the app; ``await fetcher.fetch(url, policy)`` returns the
body of an ``http``/``https`` image URL, or raises ``InvalidRequestError``. For every hop:

1. the URL is parsed here (``parse_http_url``): only ``http``/``https``, no credentials, the
   host read as a browser reads it (``address.parse_host``: ``http://2130706433/`` is
   127.0.0.1);
2. a host name is resolved once, off the event loop (``loop.getaddrinfo``), and *every*
   address it resolves to must be public or allow-listed: a name with one private address
   among public ones is refused, because which one a connection would use is not ours to
   predict;
3. the connection goes to a checked address itself (the URL handed to httpcore carries the
   IP; ``Host`` and TLS SNI carry the name, and the certificate is verified against the
   name), so a DNS answer that changes between check and connect (rebinding) is never used;
4. a redirect (301, 302, 303, 307, 308) starts the next hop from step 1, at most
   ``policy.max_redirects`` times.

The body streams with a running count and the connection is dropped as soon as the count
passes ``policy.max_bytes``; a ``Content-Length`` above it is refused before any body is
read. One deadline, ``policy.timeout``, covers resolution, connects, redirects and body.
At most ``max_concurrency`` fetches run at once per process; the wait for a slot is not
counted against the deadline. No proxy from the environment is used (httpcore reads none).

Error messages name the problem, never the resolved address or the response body.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from ipaddress import ip_address
from urllib.parse import quote, urljoin, urlsplit

import certifi
import httpcore

from pampero.errors import InvalidRequestError
from pampero.media.address import (
    IPAddress,
    canonical,
    is_public,
    never_connectable,
    parse_host,
)
from pampero.media.codes import (
    IMAGE_FETCH_FAILED,
    IMAGE_FETCH_TIMEOUT,
    IMAGE_TOO_LARGE,
    IMAGE_URL_BLOCKED,
    INVALID_IMAGE,
    INVALID_IMAGE_URL,
)
from pampero.media.decode import format_bytes
from pampero.media.policy import MediaPolicy

Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""``await resolver(host, port)``: the numeric addresses a TCP connection to ``host`` may use."""

DEFAULT_MAX_CONCURRENCY = 8
_DEFAULT_PORTS = {"http": 80, "https": 443}
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_USER_AGENT = b"pampero-image-fetch/1"
# Characters left as they are when percent-encoding a request target: RFC 3986 reserved and
# unreserved characters, and "%" so that an already-encoded target is not encoded twice.
_TARGET_SAFE = "/?#[]@!$&'()*+,;=:-._~%"


async def system_resolver(host: str, port: int) -> list[str]:
    """The system resolver, run in the loop's executor so it never blocks the event loop."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True, slots=True)
class HttpTarget:
    """One parsed hop: where to connect and what to ask for."""

    url: str
    scheme: str
    host: IPAddress | str
    """An address, or a normalised DNS name still to be resolved."""
    port: int
    target: str
    """Path and query, ASCII, as sent on the request line."""

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in str(self.host) else str(self.host)
        return host if self.port == _DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


def _bad_url(reason: str) -> InvalidRequestError:
    return InvalidRequestError(reason, code=INVALID_IMAGE_URL)


def _failed(reason: str) -> InvalidRequestError:
    return InvalidRequestError(reason, code=IMAGE_FETCH_FAILED)


def parse_http_url(url: str) -> HttpTarget:
    """Parse and validate an ``http``/``https`` URL; ``InvalidRequestError`` if it is not one."""
    if any(c.isspace() or ord(c) < 0x20 or c in "\\\x7f" for c in url):
        raise _bad_url("The image URL contains whitespace, control characters or backslashes.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise _bad_url("The image URL is malformed.") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise _bad_url("The image URL's scheme must be http, https or data.")
    if parts.username is not None or parts.password is not None:
        raise _bad_url("The image URL must not contain credentials.")
    host = parse_host(parts.hostname or "")
    if port == 0:
        raise _bad_url("The image URL's port is invalid.")
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return HttpTarget(
        url=url,
        scheme=scheme,
        host=host,
        port=port or _DEFAULT_PORTS[scheme],
        target=quote(target, safe=_TARGET_SAFE),
    )


@dataclass(frozen=True, slots=True)
class _Reply:
    body: bytes = b""
    location: str | None = None


class Fetcher:
    """Bounded, SSRF-safe HTTP(S) GET of image URLs (see the module docstring).

    ``resolver`` and ``ssl_context`` are for tests: a resolver that maps names to loopback, a
    context that trusts a test certificate. Example::

        fetcher = Fetcher(max_concurrency=8)
        body = await fetcher.fetch("https://example.com/cat.png", MediaPolicy())
    """

    def __init__(
        self,
        *,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        resolver: Resolver | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self._slots = asyncio.Semaphore(max_concurrency)
        self._resolve = resolver or system_resolver
        self._ssl_context = ssl_context or _default_ssl_context()

    async def fetch(self, url: str, policy: MediaPolicy) -> bytes:
        """The body of the image at ``url``, following redirects; at most ``max_bytes``."""
        target = parse_http_url(url)
        async with self._slots:
            try:
                async with asyncio.timeout(policy.timeout):
                    return await self._follow(target, policy)
            except (TimeoutError, httpcore.TimeoutException):
                raise InvalidRequestError(
                    f"Fetching the image timed out after {policy.timeout:g} s.",
                    code=IMAGE_FETCH_TIMEOUT,
                ) from None

    async def _follow(self, target: HttpTarget, policy: MediaPolicy) -> bytes:
        for hop in range(policy.max_redirects + 1):
            addresses = await self._vet(target, policy, redirected=hop > 0)
            reply = await self._exchange(target, addresses, policy)
            if reply.location is None:
                return reply.body
            try:
                target = parse_http_url(urljoin(target.url, reply.location))
            except InvalidRequestError as exc:
                raise InvalidRequestError(
                    f"The image URL redirected to an unusable URL: {exc.message}", code=exc.code
                ) from None
        raise _failed(f"The image URL redirected more than {policy.max_redirects} times.")

    async def _vet(
        self, target: HttpTarget, policy: MediaPolicy, *, redirected: bool
    ) -> list[IPAddress]:
        """The addresses to connect to, each one checked; raises if any is forbidden."""
        if isinstance(target.host, str):
            addresses = await self._lookup(target.host, target.port)
            by_name = policy.allow.allows_name(target.host)
        else:
            addresses, by_name = [target.host], False
        for address in addresses:
            allowed = by_name or is_public(address) or policy.allow.allows_address(address)
            if never_connectable(address) or not allowed:
                what = "redirected to a host" if redirected else "points to a host"
                raise InvalidRequestError(
                    f"The image URL {what} that is not a public address.", code=IMAGE_URL_BLOCKED
                )
        return addresses

    async def _lookup(self, name: str, port: int) -> list[IPAddress]:
        try:
            found = await self._resolve(name, port)
            addresses = [canonical(ip_address(a)) for a in found]
        except (OSError, UnicodeError, ValueError):
            addresses = []
        if not addresses:
            raise _failed("The image URL's host name could not be resolved.")
        return list(dict.fromkeys(addresses))

    async def _exchange(
        self, target: HttpTarget, addresses: list[IPAddress], policy: MediaPolicy
    ) -> _Reply:
        for address in addresses:
            reply = await self._get(target, address, policy)
            if reply is not None:
                return reply
        raise _failed("Could not connect to the image URL's host.")

    async def _get(
        self, target: HttpTarget, address: IPAddress, policy: MediaPolicy
    ) -> _Reply | None:
        """One GET to ``address``; None when no connection could be made (try the next)."""
        url = httpcore.URL(
            scheme=target.scheme.encode(),
            host=str(address).encode(),
            port=target.port,
            target=target.target.encode("ascii"),
        )
        extensions = {"sni_hostname": target.host} if isinstance(target.host, str) else {}
        headers = [
            (b"Host", target.host_header.encode("ascii")),
            (b"User-Agent", _USER_AGENT),
            (b"Accept", b"image/*"),
            (b"Accept-Encoding", b"identity"),
            (b"Connection", b"close"),
        ]
        pool = httpcore.AsyncConnectionPool(
            ssl_context=self._ssl_context, max_connections=1, retries=0, http1=True, http2=False
        )
        async with pool:
            try:
                async with pool.stream("GET", url, headers=headers, extensions=extensions) as resp:
                    return await _read(resp, policy)
            except httpcore.ConnectError as exc:
                _raise_if_tls(exc)
                return None
            except (httpcore.NetworkError, httpcore.ProtocolError, OSError):
                raise _failed("The connection to the image URL's host failed.") from None


async def _read(response: httpcore.Response, policy: MediaPolicy) -> _Reply:
    status = response.status
    if status in _REDIRECTS:
        location = _header(response, b"location")
        if not location:
            raise _failed(f"The image URL answered HTTP {status} without a Location.")
        return _Reply(location=location)
    if not 200 <= status < 300:
        raise _failed(f"The image URL answered HTTP {status}.")
    if _not_an_image_type(_header(response, b"content-type")):
        raise InvalidRequestError("The image URL did not return an image.", code=INVALID_IMAGE)
    too_large = InvalidRequestError(
        f"The image is larger than the {format_bytes(policy.max_bytes)} limit.",
        code=IMAGE_TOO_LARGE,
    )
    length = _header(response, b"content-length")
    if length is not None and length.isdigit() and int(length) > policy.max_bytes:
        raise too_large
    body = bytearray()
    async for chunk in response.aiter_stream():
        body += chunk
        if len(body) > policy.max_bytes:
            raise too_large
    return _Reply(body=bytes(body))


def _header(response: httpcore.Response, name: bytes) -> str | None:
    for key, value in response.headers:
        if key.lower() == name:
            return value.decode("latin-1").strip()
    return None


def _not_an_image_type(content_type: str | None) -> bool:
    """Whether the response declares a type that is surely not an image (an error page).

    Anything else, including a missing or generic type (``application/octet-stream``, as many
    object stores send), is left to the decoder to judge from the bytes.
    """
    if not content_type:
        return False
    media_type = content_type.split(";", 1)[0].strip().lower()
    return (
        media_type.startswith("text/")
        or media_type.endswith(("+json", "+xml"))
        or media_type in ("application/json", "application/xml", "application/javascript")
    )


def _raise_if_tls(exc: BaseException) -> None:
    cause: BaseException | None = exc
    for _ in range(8):  # the chain is short; the bound only guards against a cycle
        if cause is None:
            return
        if isinstance(cause, ssl.SSLCertVerificationError):
            raise _failed("The image URL's TLS certificate could not be verified.") from None
        if isinstance(cause, ssl.SSLError):
            raise _failed("The TLS handshake with the image URL's host failed.") from None
        cause = cause.__cause__ or cause.__context__


def _default_ssl_context() -> ssl.SSLContext:
    # The system's trust store plus certifi's, as httpx does with certifi: an image host
    # trusted by either verifies.
    context = ssl.create_default_context()
    context.load_verify_locations(certifi.where())
    return context
