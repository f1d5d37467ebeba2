"""Hosts as a connection would read them, which addresses are public, and the allow-list."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest

from pampero.errors import InvalidRequestError
from pampero.media.address import is_public, never_connectable, parse_host
from pampero.media.codes import INVALID_IMAGE_URL
from pampero.media.policy import AllowList, MediaPolicy

LOOPBACK = IPv4Address("127.0.0.1")


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "2130706433",  # one decimal number
        "0x7f000001",  # one hexadecimal number
        "0X7F000001",
        "0177.0.0.1",  # octal first part
        "0177.0000.0000.0001",
        "127.1",  # the last part fills the remaining three bytes
        "127.0.1",
        "0x7f.1",
        "0x7f.0x0.0x0.0x1",
        "127.0.0.1.",  # trailing root dot
        "１２７.０.０.１",  # full-width digits and dots, mapped by IDNA
        "127。0。0。1",  # ideographic full stops are dots too
        "::ffff:127.0.0.1",  # IPv4-mapped IPv6 is the IPv4 address
        "::ffff:7f00:1",
    ],
)
def test_odd_spellings_of_loopback_read_as_loopback(host: str) -> None:
    assert parse_host(host) == LOOPBACK


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("0", "0.0.0.0"),
        ("0x0", "0.0.0.0"),
        ("0xa9fea9fe", "169.254.169.254"),
        ("2852039166", "169.254.169.254"),
        ("10.1", "10.0.0.1"),
        ("192.168.257", "192.168.1.1"),
        ("0x08080808", "8.8.8.8"),
    ],
)
def test_numeric_hosts(host: str, address: str) -> None:
    assert parse_host(host) == ip_address(address)


@pytest.mark.parametrize(
    "host",
    ["1.2.3.4.5", "256.0.0.1", "09.1", "1.2.3.0x100", "4294967296", "1.2.3.08"],
)
def test_invalid_numeric_hosts_are_refused_not_resolved(host: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse_host(host)
    assert info.value.code == INVALID_IMAGE_URL


@pytest.mark.parametrize(
    ("host", "name"),
    [
        ("Example.COM", "example.com"),
        ("example.com.", "example.com"),
        ("0xg.example", "0xg.example"),  # not a number: a name
        ("1.2.3.4.example", "1.2.3.4.example"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("my_host.internal", "my_host.internal"),
    ],
)
def test_names_are_normalised(host: str, name: str) -> None:
    assert parse_host(host) == name


@pytest.mark.parametrize("host", ["exa mple.com", "a..b", "-a.com", "%31%32%37.0.0.1", "a" * 64])
def test_malformed_names_are_refused(host: str) -> None:
    with pytest.raises(InvalidRequestError):
        parse_host(host)


def test_ipv6_zone_is_refused() -> None:
    with pytest.raises(InvalidRequestError):
        parse_host("fe80::1%eth0")


NOT_PUBLIC = [
    "0.0.0.0",
    "0.1.2.3",
    "10.0.0.1",
    "100.64.0.1",  # shared address space
    "127.0.0.1",
    "127.255.255.254",
    "169.254.169.254",  # cloud metadata
    "172.16.0.1",
    "172.31.255.255",
    "192.0.0.8",
    "192.0.2.1",
    "192.168.1.1",
    "198.18.0.1",
    "198.51.100.1",
    "203.0.113.1",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "::",
    "::1",
    "::ffff:10.0.0.1",  # IPv4-mapped
    "::127.0.0.1",  # IPv4-compatible (deprecated)
    "::8.8.8.8",
    "::ffff:0:7f00:1",  # SIIT-translated
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "64:ff9b:1::808:808",  # local-use NAT64
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:c0a8:101::1",  # 6to4 of 192.168.1.1
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    "2001:db8::1",
    "3fff::1",
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "fec0::1",
    "ff02::1",
    "100::1",
]
PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "100.128.0.1",  # just past the shared space
    "172.32.0.1",  # just past 172.16/12
    "2606:4700:4700::1111",
    "2001:4860:4860::8888",
    "64:ff9b::808:808",  # NAT64 of a public address (DNS64 networks)
    "2002:808:808::1",  # 6to4 of a public address
]


@pytest.mark.parametrize("address", NOT_PUBLIC)
def test_not_public(address: str) -> None:
    assert not is_public(ip_address(address))


@pytest.mark.parametrize("address", PUBLIC)
def test_public(address: str) -> None:
    assert is_public(ip_address(address))


@pytest.mark.parametrize(
    "address", ["0.0.0.0", "224.0.0.1", "255.255.255.255", "::", "ff02::1", "::ffff:0.0.0.0"]
)
def test_never_connectable(address: str) -> None:
    assert never_connectable(ip_address(address))


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.1", "::1", "8.8.8.8"])
def test_connectable_when_allowed(address: str) -> None:
    assert not never_connectable(ip_address(address))


def test_allow_list_entries() -> None:
    allow = AllowList.parse(
        ["images.internal", ".corp.example", "10.0.0.0/8", "::1/128", "127.0.0.1", "192.168.1.7/24"]
    )
    assert allow.allows_name("images.internal")
    assert not allow.allows_name("x.images.internal")
    assert allow.allows_name("corp.example")
    assert allow.allows_name("a.b.corp.example")
    assert not allow.allows_name("evilcorp.example")
    assert allow.allows_address(ip_address("10.9.8.7"))
    assert allow.allows_address(ip_address("::1"))
    assert allow.allows_address(ip_address("::ffff:127.0.0.1"))  # mapped form matches IPv4
    assert not allow.allows_address(ip_address("127.0.0.2"))
    assert allow.allows_address(ip_address("192.168.1.200"))  # host bits cleared
    assert not allow.allows_address(ip_address("11.0.0.1"))
    assert not AllowList()


def test_allow_list_reads_addresses_like_urls_do() -> None:
    allow = AllowList.parse(["127.1", "Images.Internal."])
    assert allow.allows_address(LOOPBACK)
    assert allow.allows_name("images.internal")


@pytest.mark.parametrize(
    "entry", ["", "http://x.example", "x.example:80", "*.example", "10.0.0.0/33", ".10.0.0.0/8"]
)
def test_bad_allow_list_entries(entry: str) -> None:
    with pytest.raises(ValueError):
        AllowList.parse([entry])


def test_policy_from_settings() -> None:
    class Settings:
        media_allow = ("127.0.0.0/8",)
        media_timeout = 2.0
        media_max_bytes = 1000
        media_max_redirects = 1
        media_max_pixels = 10
        media_max_images = 2
        media_max_request_pixels = 15
        media_max_side = 64

    policy = MediaPolicy.from_settings(Settings())
    assert policy.timeout == 2.0 and policy.max_bytes == 1000 and policy.max_images == 2
    assert policy.max_request_pixels == 15 and policy.max_side == 64
    assert policy.allow.allows_address(IPv4Address("127.0.0.9"))
    assert not policy.allow.allows_address(IPv6Address("::1"))


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        MediaPolicy(timeout=0)
    with pytest.raises(ValueError):
        MediaPolicy(max_images=-1)
