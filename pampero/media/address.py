"""What a URL's host means, and which addresses an image fetch may connect to.

Both answers come without touching the network.

``parse_host`` reads a host the way the WHATWG URL standard (browsers, most HTTP clients) and
the C resolver's ``inet_aton`` do, so that an address spelled oddly is recognised as the address
a connection to it would reach::

    parse_host("2130706433")   == IPv4Address("127.0.0.1")   # one 32-bit number
    parse_host("0x7f000001")   == IPv4Address("127.0.0.1")   # hexadecimal
    parse_host("0177.0.0.1")   == IPv4Address("127.0.0.1")   # leading zero: octal
    parse_host("127.1")        == IPv4Address("127.0.0.1")   # last part fills the rest
    parse_host("::ffff:7f00:1") == IPv4Address("127.0.0.1")  # IPv4-mapped IPv6
    parse_host("Example.COM.") == "example.com"

A host that looks numeric but is not a valid address (``1.2.3.4.5``, ``09.1``) is refused
rather than handed to a resolver, which might read it differently.

``is_public`` says whether an address is globally reachable unicast: every IANA special-purpose
range (private, loopback, link-local and the cloud metadata address 169.254.169.254, shared
100.64/10, documentation, benchmarking, reserved, multicast, broadcast, unspecified) is not.
IPv6 forms that carry an IPv4 address (mapped, NAT64 ``64:ff9b::/96``, 6to4) are judged by
the address they carry; IPv4-compatible, SIIT-translated and Teredo addresses are never public
(deprecated or tunnelled: no image host needs them); outside ``2000::/3`` nothing is public.
The lists are spelled out here rather than taken from ``ipaddress.is_global`` alone, whose
answers changed between Python versions; ``is_global`` is consulted as well.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network

from pampero.errors import InvalidRequestError
from pampero.media.codes import INVALID_IMAGE_URL

IPAddress = IPv4Address | IPv6Address

_V4_NOT_PUBLIC = tuple(
    IPv4Network(n)
    for n in (
        "0.0.0.0/8",  # "this network"; 0.0.0.0 reaches the local host on Linux
        "10.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT, shared address space
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, including the cloud metadata service
        "172.16.0.0/12",
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",
        "192.88.99.0/24",  # deprecated 6to4 relay anycast
        "192.168.0.0/16",
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and the limited broadcast address
    )
)
_V6_GLOBAL_UNICAST = IPv6Network("2000::/3")
_V6_NOT_PUBLIC = tuple(
    IPv6Network(n)
    for n in (
        "2001::/23",  # IETF protocol assignments (Teredo, benchmarking, ORCHID)
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation
        "3ffe::/16",  # the returned 6bone range
    )
)
_NAT64 = IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE = IPv6Network("::/96")
_SIIT = IPv6Network("::ffff:0:0:0/96")

# Never a sensible TCP destination, even for an allow-listed network: connecting to the
# unspecified address reaches this host, and multicast or broadcast cannot carry a fetch.
_V4_NEVER = (IPv4Network("0.0.0.0/32"), IPv4Network("224.0.0.0/4"), IPv4Network("240.0.0.0/4"))
_V6_NEVER = (IPv6Network("::/128"), IPv6Network("ff00::/8"))

_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")


def _bad_host(reason: str) -> InvalidRequestError:
    return InvalidRequestError(f"The image URL's host {reason}.", code=INVALID_IMAGE_URL)


def parse_host(host: str) -> IPAddress | str:
    """The address ``host`` spells, or its normalised (lower-case, ASCII) DNS name.

    ``host`` is a URL's host without brackets (``urlsplit(url).hostname``). Raises
    ``InvalidRequestError`` for a host that is neither a valid address nor a valid name.
    """
    if not host:
        raise _bad_host("is missing")
    if ":" in host:
        return _parse_ipv6(host)
    if not host.isascii():
        try:
            # IDNA maps full-width digits and dots to ASCII, so "１２７.０.０.１" becomes an
            # address below, as it does in a browser.
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise _bad_host("is not a valid internationalised name") from None
    host = host.lower()
    labels = host.split(".")
    if len(labels) > 1 and labels[-1] == "":
        labels.pop()  # the root label of a fully-qualified name: "example.com."
    if _ends_in_number(labels):
        address = _parse_ipv4(labels)
        if address is None:
            raise _bad_host("is not a valid IPv4 address")
        return address
    name = ".".join(labels)
    if len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        raise _bad_host("is not a valid host name")
    return name


def canonical(address: IPAddress) -> IPAddress:
    """``address``, with an IPv4-mapped IPv6 address as the IPv4 address it maps."""
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_public(address: IPAddress) -> bool:
    """Whether ``address`` is globally reachable unicast (see the module docstring)."""
    if isinstance(address, IPv4Address):
        return (
            address.is_global
            and not address.is_multicast
            and not any(address in net for net in _V4_NOT_PUBLIC)
        )
    carried = _carried_ipv4(address)
    if carried is not None:
        return is_public(carried)
    if address.teredo is not None or address.scope_id:
        return False
    if address in _IPV4_COMPATIBLE or address in _SIIT:
        return False
    return (
        address in _V6_GLOBAL_UNICAST
        and address.is_global
        and not any(address in net for net in _V6_NOT_PUBLIC)
    )


def never_connectable(address: IPAddress) -> bool:
    """Whether no allow-list entry may open ``address`` (unspecified, multicast, broadcast)."""
    address = canonical(address)
    if isinstance(address, IPv4Address):
        return any(address in net for net in _V4_NEVER)
    carried = _carried_ipv4(address)
    if carried is not None and never_connectable(carried):
        return True
    return any(address in net for net in _V6_NEVER)


def parse_network(entry: str) -> IPv4Network | IPv6Network | None:
    """``entry`` as an IP network (``10.0.0.0/8``, ``::1``, ``127.1``), or None if it is not one.

    Host bits are cleared (``10.1.2.3/8`` means ``10.0.0.0/8``); a bare address is a network
    of one. Raises ``ValueError`` for a malformed network.
    """
    if "/" in entry:
        return ip_network(entry, strict=False)
    try:
        host = parse_host(entry)
    except InvalidRequestError:
        return None
    return None if isinstance(host, str) else ip_network(host)


def _carried_ipv4(address: IPv6Address) -> IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def _parse_ipv6(host: str) -> IPAddress:
    if "%" in host:
        raise _bad_host("carries an IPv6 zone, which is not allowed")
    try:
        return canonical(IPv6Address(host))
    except ValueError:
        raise _bad_host("is not a valid IPv6 address") from None


def _ends_in_number(labels: list[str]) -> bool:
    """WHATWG URL "ends in a number": the host is to be read as an IPv4 address."""
    last = labels[-1]
    if last and last.isdigit():
        return True
    return _ipv4_number(last) is not None


def _ipv4_number(part: str) -> int | None:
    """One part of an IPv4 host: decimal, ``0x`` hexadecimal or leading-zero octal."""
    if not part:
        return None
    radix = 10
    if part[:2] in ("0x", "0X"):
        part, radix = part[2:], 16
    elif len(part) > 1 and part[0] == "0":
        part, radix = part[1:], 8
    if not part:
        return 0
    digits = "0123456789abcdef"[:radix]
    if not all(c in digits for c in part.lower()):
        return None
    return int(part, radix)


def _parse_ipv4(labels: list[str]) -> IPv4Address | None:
    if len(labels) > 4:
        return None
    numbers = [_ipv4_number(label) for label in labels]
    if any(n is None for n in numbers):
        return None
    values = [n for n in numbers if n is not None]
    *head, last = values
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(values)):
        return None
    value = last
    for i, n in enumerate(head):
        value += n << (8 * (3 - i))
    return IPv4Address(value)
