"""Remote images: SSRF guard with a canary, redirects, byte cap, timeouts, TLS, concurrency.

Two kinds of loopback server (``tests/image_server.py``): ``images`` serves its routes and is
reached through the allow-list; ``canary`` serves the same routes but must never be reached, and
counts every TCP connection it accepts (not just HTTP requests), so "zero hits" means no
connection at all.
Names such as ``images.test`` are mapped to loopback by a test resolver.
"""

from __future__ import annotations

import asyncio
import base64
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from pampero.errors import InvalidRequestError
from pampero.media import AllowList, ImageSource, LoadedImage, MediaPolicy
from pampero.media.codes import (
    IMAGE_FETCH_FAILED,
    IMAGE_FETCH_TIMEOUT,
    IMAGE_TOO_LARGE,
    IMAGE_URL_BLOCKED,
    INVALID_IMAGE,
    INVALID_IMAGE_URL,
)
from pampero.media.fetch import Resolver, system_resolver
from tests.image_server import HUGE, Server, png, start, stop


@pytest.fixture
def images() -> Iterator[Server]:
    server = start()
    yield server
    stop(server)


@pytest.fixture
def canary() -> Iterator[Server]:
    server = start()
    yield server
    stop(server)
    assert server.connections == 0, "the canary was reached"


def mapped(names: dict[str, Sequence[str]], calls: list[str] | None = None) -> Resolver:
    """A resolver that answers for test names and asks the system for everything else."""

    async def resolve(host: str, port: int) -> Sequence[str]:
        if calls is not None:
            calls.append(host)
        if host in names:
            return names[host]
        return await system_resolver(host, port)

    return resolve


LOOPBACK_NAMES: dict[str, Sequence[str]] = {
    "images.test": ["127.0.0.1"],
    "cdn.test": ["127.0.0.1"],
    "sneaky.test": ["127.0.0.1"],  # a public-looking name pointing inside
    "mixed.test": ["93.184.216.34", "127.0.0.1"],
    "metadata.test": ["169.254.169.254"],
    "v6only.test": ["::1"],
}
ALLOW_TEST_NAMES = MediaPolicy(timeout=5.0, allow=AllowList.parse(["images.test", "cdn.test"]))
ALLOW_LOOPBACK = MediaPolicy(timeout=5.0, allow=AllowList.parse(["127.0.0.0/8"]))


def source(**kwargs: Any) -> ImageSource:
    kwargs.setdefault("resolver", mapped(LOOPBACK_NAMES))
    return ImageSource(**kwargs)


def load(url: str, policy: MediaPolicy, src: ImageSource | None = None) -> LoadedImage:
    part = {"type": "image_url", "image_url": {"url": url}}
    return asyncio.run((src or source()).load(part, policy))


def refused(url: str, policy: MediaPolicy, code: str, src: ImageSource | None = None) -> str:
    with pytest.raises(InvalidRequestError) as info:
        load(url, policy, src)
    assert info.value.code == code, info.value.message
    assert info.value.status_code == 400
    return info.value.message


# -- fetching through the allow-list ------------------------------------------------------------


def test_fetch_through_allow_listed_network(images: Server) -> None:
    loaded = load(f"http://127.0.0.1:{images.port}/img?w=40", ALLOW_LOOPBACK)
    assert loaded.format == "PNG" and loaded.size == (40, 24)
    assert images.connections == 1


def test_fetch_through_allow_listed_name(images: Server) -> None:
    loaded = load(f"http://images.test:{images.port}/img", ALLOW_TEST_NAMES)
    assert loaded.size == (32, 24)


def test_generic_content_type_is_judged_by_the_bytes(images: Server) -> None:
    assert load(f"http://images.test:{images.port}/octet", ALLOW_TEST_NAMES).format == "PNG"


def test_odd_spelling_connects_to_the_address_it_spells(images: Server) -> None:
    # With loopback allowed, 2130706433 is 127.0.0.1 for the check and for the connection.
    assert load(f"http://2130706433:{images.port}/img", ALLOW_LOOPBACK).size == (32, 24)
    assert images.connections == 1


# -- SSRF: every blocked case leaves the canary untouched -------------------------------------

BLOCKED_HOSTS = [
    "127.0.0.1",
    "localhost",
    "2130706433",
    "0x7f000001",
    "0177.0.0.1",
    "127.1",
    "0x7f.1",
    "127.0.0.1.",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "[::1]",
    "0.0.0.0",
    "0",
    "[::]",
    "sneaky.test",
    "mixed.test",
    "v6only.test",
]


@pytest.mark.parametrize("host", BLOCKED_HOSTS)
def test_non_public_hosts_are_refused_without_connecting(canary: Server, host: str) -> None:
    message = refused(f"http://{host}:{canary.port}/img", MediaPolicy(), IMAGE_URL_BLOCKED)
    assert "127.0.0.1" not in message and "::1" not in message
    assert str(canary.port) not in message


def test_the_same_url_loads_once_allow_listed(canary: Server) -> None:
    # Proves the canary would have counted: the only difference is the allow-list.
    url = f"http://127.0.0.1:{canary.port}/img"
    refused(url, MediaPolicy(), IMAGE_URL_BLOCKED)
    assert canary.connections == 0
    assert load(url, ALLOW_LOOPBACK).size == (32, 24)
    assert canary.connections == 1
    canary.connections = 0  # for the fixture's final check


def test_metadata_address_is_refused() -> None:
    for url in ("http://169.254.169.254/latest/meta-data/", "http://metadata.test/"):
        message = refused(url, MediaPolicy(), IMAGE_URL_BLOCKED)
        assert "169.254" not in message


@pytest.mark.parametrize("host", ["0.0.0.0", "[::]"])
def test_unspecified_address_is_refused_even_when_allow_listed(canary: Server, host: str) -> None:
    policy = MediaPolicy(allow=AllowList.parse(["0.0.0.0/0", "::/0"]))
    refused(f"http://{host}:{canary.port}/img", policy, IMAGE_URL_BLOCKED)


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:{port}/img",
        "http://localhost:{port}/img",
        "http://2130706433:{port}/img",
        "http://[::ffff:127.0.0.1]:{port}/img",
        "http://sneaky.test:{port}/img",
    ],
)
def test_redirect_to_a_blocked_address_is_refused(
    images: Server, canary: Server, target: str
) -> None:
    location = quote(target.format(port=canary.port), safe="")
    url = f"http://images.test:{images.port}/to?u={location}"
    message = refused(url, ALLOW_TEST_NAMES, IMAGE_URL_BLOCKED)
    assert "redirected" in message
    assert images.paths == ["/to"]


def test_redirect_through_every_status(images: Server) -> None:
    for status in (301, 302, 303, 307, 308):
        location = quote(f"http://cdn.test:{images.port}/img", safe="")
        url = f"http://images.test:{images.port}/to?status={status}&u={location}"
        assert load(url, ALLOW_TEST_NAMES).size == (32, 24)


@pytest.mark.parametrize(
    "location", ["file:///etc/passwd", "ftp://images.test/x.png", "gopher://images.test/"]
)
def test_redirect_to_another_scheme_is_refused(images: Server, location: str) -> None:
    url = f"http://images.test:{images.port}/to?u={quote(location, safe='')}"
    message = refused(url, ALLOW_TEST_NAMES, INVALID_IMAGE_URL)
    assert "redirected" in message


def test_dns_answer_is_used_once_per_hop() -> None:
    """Rebinding: the name resolves to an allowed address first and to the canary after.

    The images server and the canary listen on the same port of 127.0.0.2 and 127.0.0.1; only
    127.0.0.2 is allowed. The connection must use the address that was checked, and a
    redirect must resolve and check again.
    """
    canary = start("127.0.0.1")
    try:
        images = start("127.0.0.2", canary.port)
    except OSError:
        stop(canary)
        pytest.skip("cannot bind 127.0.0.2 on the canary's port")
    answers = {"rebind.test": ["127.0.0.2"]}
    calls: list[str] = []

    async def rebinding(host: str, port: int) -> Sequence[str]:
        calls.append(host)
        first = answers[host]
        answers[host] = ["127.0.0.1"]
        return first

    policy = MediaPolicy(allow=AllowList.parse(["127.0.0.2"]))
    try:
        src = ImageSource(resolver=rebinding)
        assert load(f"http://rebind.test:{canary.port}/img", policy, src).size == (32, 24)
        assert calls == ["rebind.test"]
        answers["rebind.test"] = ["127.0.0.2"]
        refused(f"http://rebind.test:{canary.port}/chain/1", policy, IMAGE_URL_BLOCKED, src)
        assert images.paths == ["/img", "/chain/1"]
    finally:
        stop(images)
        stop(canary)
    assert canary.connections == 0


# -- redirects, statuses, content -------------------------------------------------------------


def test_redirect_chain_up_to_the_limit(images: Server) -> None:
    policy = MediaPolicy(max_redirects=3, allow=ALLOW_TEST_NAMES.allow)
    assert load(f"http://images.test:{images.port}/chain/3", policy).size == (32, 24)


def test_redirect_chain_past_the_limit(images: Server) -> None:
    policy = MediaPolicy(max_redirects=3, allow=ALLOW_TEST_NAMES.allow)
    message = refused(f"http://images.test:{images.port}/chain/4", policy, IMAGE_FETCH_FAILED)
    assert "more than 3" in message
    assert images.paths == ["/chain/4", "/chain/3", "/chain/2", "/chain/1"]


def test_no_redirects_allowed(images: Server) -> None:
    policy = MediaPolicy(max_redirects=0, allow=ALLOW_TEST_NAMES.allow)
    refused(f"http://images.test:{images.port}/chain/1", policy, IMAGE_FETCH_FAILED)


def test_not_found(images: Server) -> None:
    message = refused(
        f"http://images.test:{images.port}/missing", ALLOW_TEST_NAMES, IMAGE_FETCH_FAILED
    )
    assert "404" in message


def test_html_is_not_an_image(images: Server) -> None:
    message = refused(f"http://images.test:{images.port}/page", ALLOW_TEST_NAMES, INVALID_IMAGE)
    assert "hello" not in message


def test_bytes_that_are_not_an_image(images: Server) -> None:
    refused(f"http://images.test:{images.port}/junk", ALLOW_TEST_NAMES, INVALID_IMAGE)


def test_connection_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        refused(f"http://images.test:{port}/img", ALLOW_TEST_NAMES, IMAGE_FETCH_FAILED)


def test_unresolvable_name() -> None:
    async def nothing(host: str, port: int) -> Sequence[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    message = refused(
        "http://nowhere.test/img", MediaPolicy(), IMAGE_FETCH_FAILED, ImageSource(resolver=nothing)
    )
    assert "resolved" in message


@pytest.mark.parametrize(
    "url",
    [
        "http://user:pass@images.test/img",
        "http://images.test:99999/img",
        "http:///img",
        "http://images.test\\@127.0.0.1/img",
        "http://images.test/i mg",
        "http://[fe80::1%25eth0]/img",
    ],
)
def test_malformed_urls(url: str) -> None:
    refused(url, ALLOW_TEST_NAMES, INVALID_IMAGE_URL)


# -- byte cap ---------------------------------------------------------------------------------


def test_content_length_over_the_cap_is_refused_before_the_body(images: Server) -> None:
    policy = MediaPolicy(max_bytes=1024 * 1024, allow=ALLOW_TEST_NAMES.allow)
    message = refused(f"http://images.test:{images.port}/huge?length=1", policy, IMAGE_TOO_LARGE)
    assert "1 MB" in message
    assert images.wait_record("/huge?length") == {"closed_before_body": True}


def test_streamed_body_is_cut_off_at_the_cap(images: Server) -> None:
    policy = MediaPolicy(max_bytes=1024 * 1024, allow=ALLOW_TEST_NAMES.allow)
    refused(f"http://images.test:{images.port}/huge", policy, IMAGE_TOO_LARGE)
    record = images.wait_record("/huge")
    assert record["aborted"], "the client read the whole body"
    assert record["sent"] < HUGE // 2


# -- timeouts ---------------------------------------------------------------------------------


def test_timeout_waiting_for_headers(images: Server) -> None:
    policy = MediaPolicy(timeout=0.3, allow=ALLOW_TEST_NAMES.allow)
    message = refused(f"http://images.test:{images.port}/slow-headers", policy, IMAGE_FETCH_TIMEOUT)
    assert "0.3 s" in message


def test_timeout_covers_the_whole_body(images: Server) -> None:
    # Each byte arrives well within any per-read timeout; only a total deadline stops this.
    policy = MediaPolicy(timeout=0.5, allow=ALLOW_TEST_NAMES.allow)
    refused(f"http://images.test:{images.port}/dribble", policy, IMAGE_FETCH_TIMEOUT)


def test_timeout_covers_name_resolution() -> None:
    async def stuck(host: str, port: int) -> Sequence[str]:
        await asyncio.sleep(30)
        return ["93.184.216.34"]

    src = ImageSource(resolver=stuck)
    refused("http://slow-dns.test/img", MediaPolicy(timeout=0.2), IMAGE_FETCH_TIMEOUT, src)


# -- concurrency and order --------------------------------------------------------------------


def messages_with(urls: list[str]) -> list[dict[str, Any]]:
    parts = [{"type": "image_url", "image_url": {"url": u}} for u in urls]
    return [{"role": "user", "content": [{"type": "text", "text": "look"}, *parts]}]


def test_fetches_are_bounded(images: Server) -> None:
    urls = [f"http://images.test:{images.port}/gate?w={10 + i}" for i in range(6)]
    policy = MediaPolicy(max_images=6, allow=ALLOW_TEST_NAMES.allow)
    loaded = asyncio.run(source(max_concurrency=2).collect_images(messages_with(urls), policy))
    assert [img.size[0] for img in loaded] == [10, 11, 12, 13, 14, 15]
    assert images.max_in_flight == 2


def test_results_keep_message_order_whatever_finishes_first(images: Server) -> None:
    base = f"http://images.test:{images.port}"
    urls = [f"{base}/delay?s=0.4&w=11", f"{base}/img?w=22", f"{base}/delay?s=0.2&w=33"]
    loaded = asyncio.run(source().collect_images(messages_with(urls), ALLOW_TEST_NAMES))
    assert [img.size[0] for img in loaded] == [11, 22, 33]
    assert [img.param for img in loaded] == [
        f"messages[0].content[{j}].image_url" for j in (1, 2, 3)
    ]


def test_event_loop_keeps_running_during_a_fetch(images: Server) -> None:
    async def run() -> int:
        ticks = 0
        fetch = asyncio.ensure_future(
            source().load(
                {"type": "image_url", "image_url": f"http://images.test:{images.port}/delay?s=0.3"},
                ALLOW_TEST_NAMES,
            )
        )
        while not fetch.done():
            ticks += 1
            await asyncio.sleep(0.01)
        await fetch
        return ticks

    assert asyncio.run(run()) > 5


# -- TLS: the connection goes to the checked IP, the certificate is checked against the name ---


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=images.test",
         "-addext", "subjectAltName=DNS:images.test"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def tls_images(certificate: tuple[Path, Path]) -> Iterator[tuple[Server, list[str | None]]]:
    cert, key = certificate
    server = Server(("127.0.0.1", 0))
    names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda sock, name, ctx: names.append(name)  # type: ignore[assignment]
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server, names
    stop(server)


def trusting(certificate: tuple[Path, Path]) -> ImageSource:
    return source(ssl_context=ssl.create_default_context(cafile=str(certificate[0])))


def test_https_pins_the_address_and_verifies_the_name(
    tls_images: tuple[Server, list[str | None]], certificate: tuple[Path, Path]
) -> None:
    server, sni = tls_images
    url = f"https://images.test:{server.port}/img"
    assert load(url, ALLOW_TEST_NAMES, trusting(certificate)).size == (32, 24)
    assert sni == ["images.test"]


def test_https_certificate_for_another_name_is_refused(
    tls_images: tuple[Server, list[str | None]], certificate: tuple[Path, Path]
) -> None:
    server, _ = tls_images
    url = f"https://cdn.test:{server.port}/img"  # same address, but the certificate is not cdn's
    message = refused(url, ALLOW_TEST_NAMES, IMAGE_FETCH_FAILED, trusting(certificate))
    assert "certificate" in message
    assert server.paths == []


def test_https_untrusted_certificate_is_refused(
    tls_images: tuple[Server, list[str | None]],
) -> None:
    server, _ = tls_images
    message = refused(
        f"https://images.test:{server.port}/img", ALLOW_TEST_NAMES, IMAGE_FETCH_FAILED
    )
    assert "certificate" in message


def test_data_and_remote_images_together(images: Server) -> None:
    data = "data:image/png;base64," + base64.b64encode(png(7, 7)).decode()
    urls = [data, f"http://images.test:{images.port}/img?w=9"]
    loaded = asyncio.run(source().collect_images(messages_with(urls), ALLOW_TEST_NAMES))
    assert [img.size for img in loaded] == [(7, 7), (9, 24)]


def test_slots_free_up_after_failures(images: Server) -> None:
    # One slot, three timeouts: if a failure leaked its slot, the last load would wait forever.
    async def run() -> LoadedImage:
        src = source(max_concurrency=1)
        policy = MediaPolicy(timeout=0.2, allow=ALLOW_TEST_NAMES.allow)
        base = f"http://images.test:{images.port}"
        for _ in range(3):
            with pytest.raises(InvalidRequestError):
                await src.load({"type": "image_url", "image_url": f"{base}/slow-headers"}, policy)
        return await src.load({"type": "image_url", "image_url": f"{base}/img"}, policy)

    assert asyncio.run(asyncio.wait_for(run(), 10)).size == (32, 24)
