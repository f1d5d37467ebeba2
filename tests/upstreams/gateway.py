"""The set-up the gateway tests share: fault upstreams on loopback, a gateway launched over
them from a config, an httpx client to it, and a fresh start for each test.

A test module writes its fixtures in a few lines::

    @pytest.fixture(scope="module")
    def upstreams():
        with fault_upstreams({"a": ("m",), "b": ("m",)}) as started:
            yield started

    @pytest.fixture(scope="module")
    def client(launch, upstreams, tmp_path_factory):
        config = {"upstreams": [upstream_entry(u) for u in upstreams.values()]}
        with gateway_client(launch, tmp_path_factory, config) as http:
            yield http

    @pytest.fixture(autouse=True)
    def fresh(client, upstreams):
        fresh_start(client, upstreams)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import httpx
import pytest

from tests.e2e.harness import Launcher, Server
from tests.upstreams.client import settle, write_config
from tests.upstreams.fault import FaultUpstream


@contextlib.contextmanager
def fault_upstreams(models: Mapping[str, tuple[str, ...]]) -> Iterator[dict[str, FaultUpstream]]:
    """One ``FaultUpstream`` per name, serving its models; all stopped at the end."""
    started: dict[str, FaultUpstream] = {}
    try:
        for name, served in models.items():
            started[name] = FaultUpstream(name, served)
        yield started
    finally:
        for upstream in started.values():
            upstream.stop()


def upstream_entry(upstream: FaultUpstream, **fields: Any) -> dict[str, Any]:
    """An ``upstreams:`` entry of the config file for ``upstream``."""
    return {"name": upstream.name, "url": upstream.url, **fields}


@contextlib.contextmanager
def launched_gateway(
    launch: Launcher,
    tmp_path_factory: pytest.TempPathFactory,
    config: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
) -> Iterator[Server]:
    """``pampero serve --config`` with ``config`` written to a fresh folder."""
    path = write_config(tmp_path_factory.mktemp("gateway") / "gateway.yaml", dict(config))
    with launch("--config", str(path), env=dict(env or {})) as running:
        yield running


@contextlib.contextmanager
def client_of(server: Server, timeout: float = 30.0, **headers: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=timeout, headers=headers) as http:
        yield http


@contextlib.contextmanager
def gateway_client(
    launch: Launcher,
    tmp_path_factory: pytest.TempPathFactory,
    config: Mapping[str, Any],
    timeout: float = 30.0,
) -> Iterator[httpx.Client]:
    """A gateway launched over ``config`` and an httpx client to it."""
    with (
        launched_gateway(launch, tmp_path_factory, config) as server,
        client_of(server, timeout) as http,
    ):
        yield http


def fresh_start(
    client: httpx.Client,
    upstreams: Mapping[str, FaultUpstream],
    ignore: Iterable[str] = (),
) -> None:
    """No provider cooling down (but those in ``ignore``), every upstream back to ``ok`` with
    its counters at zero: a test's failures never leak into the next."""
    settle(client, ignore=set(ignore))
    for upstream in upstreams.values():
        upstream.reset()
