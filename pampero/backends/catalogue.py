"""The model catalogue: public model ids (and aliases) mapped to the backends serving them.

Backends come from factories in the ``backend`` registry: ``local`` (the models this process
serves) always, then every name or ``module:attr`` given by the ``backends`` setting
(``--backend``), and entry points in the group ``pampero.backends``. A factory takes a
``BackendEnvironment`` and returns backends; each backend's card names the ids it answers to.

Example::

    catalogue = Catalogue.build(BackendEnvironment(settings, services), settings.backends)
    backend = catalogue.resolve("gpt-4o")       # ModelNotFound (404) lists what exists
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from pampero.backends.base import BackendEnvironment, BackendFactory, ChatBackend, ModelCard
from pampero.errors import ModelNotFound
from pampero.registry import Registry

BACKENDS: Registry[BackendFactory] = Registry(
    "backend",
    "pampero.backends",
    {"local": "pampero.backends.local:local_backends"},
    targets=True,
)


class Catalogue:
    """Resolves the ``model`` field of a request to the backend that answers it."""

    def __init__(self, backends: Iterable[ChatBackend]) -> None:
        self._backends = list(backends)
        self._names: dict[str, ChatBackend] = {}
        for backend in self._backends:
            for name in backend.card.names:
                if name in self._names:
                    raise ValueError(f"model id or alias {name!r} is served by two backends")
                self._names[name] = backend

    @classmethod
    def build(cls, environment: BackendEnvironment, extra: Iterable[str] = ()) -> Catalogue:
        backends: list[ChatBackend] = []
        for name in ("local", *extra):
            backends.extend(BACKENDS.load(name)(environment))
        return cls(backends)

    def __iter__(self) -> Iterator[ChatBackend]:
        return iter(self._backends)

    def resolve(self, name: str) -> ChatBackend:
        backend = self._names.get(name)
        if backend is None:
            raise ModelNotFound.among(name, self._names)
        return backend

    def cards(self) -> list[tuple[str, ModelCard]]:
        """Every public name with the card of the backend behind it, in serving order."""
        return [(name, backend.card) for name, backend in self._names.items()]

    def model_object(self, name: str) -> dict[str, Any]:
        """OpenAI's model object for ``name``, plus what a client plans requests with."""
        return model_object(name, self.resolve(name).card)

    def models_list(self) -> dict[str, Any]:
        return {"object": "list", "data": [model_object(n, c) for n, c in self.cards()]}


def model_object(name: str, card: ModelCard) -> dict[str, Any]:
    return {
        "id": name,
        "object": "model",
        "created": card.created,
        "owned_by": card.owned_by,
        "root": card.id,
        "parent": None if name == card.id else card.id,
        "max_model_len": card.context_length,
        "context_length": card.context_length,
        "capabilities": dict(card.capabilities),
    }
