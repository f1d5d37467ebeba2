"""The limits every image load obeys, and the allow-list for non-public hosts.

A policy is a frozen value, built once from the settings (``MediaPolicy.from_settings``) and
passed to each ``ImageSource.load``; tests build their own::

    policy = MediaPolicy(timeout=1.0, allow=AllowList.parse(["127.0.0.0/8"]))

The allow-list only widens what may be fetched: public addresses are always allowed, and an
entry additionally opens hosts whose addresses are not public. Entries:

- ``images.internal``: exactly this host name (after the URL's host is normalised);
- ``.corp.example``: this domain and every name under it;
- ``10.0.0.0/8``, ``127.0.0.1``, ``::1/128``: every resolved address in the network.

Even an allow-listed entry never opens the unspecified address, multicast or broadcast.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network
from typing import Protocol

from pampero.errors import InvalidRequestError
from pampero.media.address import IPAddress, canonical, parse_host, parse_network

DEFAULT_TIMEOUT_S = 5.0
DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_REDIRECTS = 3
# 50 megapixels admits the largest common camera and phone photos (8160x6120 = 49.9 MP)
# while bounding one decode to about 200 MB (RGBA, 4 bytes a pixel).
DEFAULT_MAX_PIXELS = 50_000_000
DEFAULT_MAX_IMAGES = 8
# Two full-size images' worth: eight 50 MP images in one request cost seconds of CPU and GBs.
DEFAULT_MAX_REQUEST_PIXELS = 100_000_000
DEFAULT_MAX_SIDE = 2048


@dataclass(frozen=True, slots=True)
class AllowList:
    """Non-public hosts, domains and networks that image URLs may nevertheless reach."""

    hosts: frozenset[str] = frozenset()
    domains: tuple[str, ...] = ()
    networks: tuple[IPv4Network | IPv6Network, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowList:
        """Parse ``--media-allow`` values; ``ValueError`` names a malformed entry."""
        hosts: set[str] = set()
        domains: list[str] = []
        networks: list[IPv4Network | IPv6Network] = []
        for raw in entries:
            entry = raw.strip()
            try:
                network = parse_network(entry.lstrip("."))
            except ValueError:
                raise ValueError(f"media allow-list entry {raw!r} is not a valid network") from None
            if network is not None and not entry.startswith("."):
                networks.append(network)
                continue
            name = _name(entry.lstrip("."), raw)
            if entry.startswith("."):
                domains.append(name)
            else:
                hosts.add(name)
        return cls(frozenset(hosts), tuple(domains), tuple(networks))

    def allows_name(self, name: str) -> bool:
        """Whether the normalised host name ``name`` is allow-listed by name or domain."""
        return name in self.hosts or any(
            name == domain or name.endswith("." + domain) for domain in self.domains
        )

    def allows_address(self, address: IPAddress) -> bool:
        """Whether ``address`` lies in an allow-listed network."""
        address = canonical(address)
        return any(address in network for network in self.networks)

    def __bool__(self) -> bool:
        return bool(self.hosts or self.domains or self.networks)


def _name(entry: str, raw: str) -> str:
    if not entry or any(c in entry for c in "/:@*?#"):
        raise ValueError(
            f"media allow-list entry {raw!r} must be a host name (images.internal), "
            "a domain (.corp.example) or an IP network (10.0.0.0/8)"
        )
    try:
        host = parse_host(entry)
    except InvalidRequestError:
        raise ValueError(f"media allow-list entry {raw!r} is not a valid host name") from None
    if not isinstance(host, str):
        raise ValueError(f"media allow-list entry {raw!r} is an address, not a domain")
    return host


class MediaSettings(Protocol):
    """The settings fields a policy is built from (``pampero.settings.Settings`` has them)."""

    @property
    def media_allow(self) -> Sequence[str]: ...
    @property
    def media_timeout(self) -> float: ...
    @property
    def media_max_bytes(self) -> int: ...
    @property
    def media_max_redirects(self) -> int: ...
    @property
    def media_max_pixels(self) -> int: ...
    @property
    def media_max_images(self) -> int: ...
    @property
    def media_max_request_pixels(self) -> int: ...
    @property
    def media_max_side(self) -> int: ...


@dataclass(frozen=True, slots=True)
class MediaPolicy:
    """Limits for loading the images of one request."""

    timeout: float = DEFAULT_TIMEOUT_S
    """Seconds one remote image may take, DNS, connects, redirects and body together."""
    max_bytes: int = DEFAULT_MAX_BYTES
    """Largest encoded image, fetched or decoded from a data URI."""
    max_redirects: int = DEFAULT_MAX_REDIRECTS
    max_pixels: int = DEFAULT_MAX_PIXELS
    """Largest width x height, checked from the header before any pixel is decoded."""
    max_images: int = DEFAULT_MAX_IMAGES
    """Most images in one request, all turns together."""
    max_request_pixels: int = DEFAULT_MAX_REQUEST_PIXELS
    """Most pixels of all images of one request together, checked from their headers before
    any is decoded."""
    max_side: int = DEFAULT_MAX_SIDE
    """Images are decoded to fit this many pixels a side (``detail="low"``: 512)."""
    allow: AllowList = field(default_factory=AllowList)

    def __post_init__(self) -> None:
        if self.timeout <= 0:
            raise ValueError("media timeout must be positive")
        if min(self.max_bytes, self.max_pixels, self.max_request_pixels, self.max_side) < 1:
            raise ValueError("media byte and pixel caps must be positive")
        if min(self.max_redirects, self.max_images) < 0:
            raise ValueError("media redirect and image limits cannot be negative")

    @classmethod
    def from_settings(cls, settings: MediaSettings) -> MediaPolicy:
        return cls(
            timeout=settings.media_timeout,
            max_bytes=settings.media_max_bytes,
            max_redirects=settings.media_max_redirects,
            max_pixels=settings.media_max_pixels,
            max_images=settings.media_max_images,
            max_request_pixels=settings.media_max_request_pixels,
            max_side=settings.media_max_side,
            allow=AllowList.parse(settings.media_allow),
        )
