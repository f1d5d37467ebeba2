"""The one settings model of pampero.

Values come, highest priority first, from command-line flags (``pampero serve --port 9000``),
environment variables (``PAMPERO_PORT=9000``; lists as JSON: ``PAMPERO_API_KEYS='["k1","k2"]'``),
a config file (``--config pampero.yaml`` or ``PAMPERO_CONFIG``; YAML or TOML, same field names)
and the defaults below. It is loaded once, by the CLI, and handed to the app factory.

Example config file::

    port: 8000
    api_keys: ["sk-local-1"]
    models:
      - id: Qwen/Qwen2.5-Coder-0.5B-Instruct
        path: default            # the embedded default model
        aliases: [qwen-coder, gpt-4o-mini]
      - id: my-llama
        path: /models/llama-3.2-1b-instruct-q4_k_m.gguf
        n_ctx: 8192
      - id: my-vlm                 # a GGUF vision-language model and its projector
        path: /models/qwen2.5-vl-3b-instruct-q4_k_m.gguf
        mmproj: /models/mmproj-qwen2.5-vl-3b-instruct-f16.gguf
      - id: smolvlm                # a Hugging Face directory (pampero[transformers])
        path: /models/SmolVLM-256M-Instruct
        engine: transformers
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from platformdirs import user_cache_dir
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from pampero.pricing import Price
from pampero.protocol.common import MAX_SPECULATIVE_TOKENS

DEFAULT_MODEL_ID = "Qwen/Qwen2.5-Coder-0.5B-Instruct"
DEFAULT_MODEL_PATH = "default"


def default_home() -> Path:
    return Path(user_cache_dir("pampero"))


class ModelConfig(BaseModel):
    """One served model: its public id, where its weights are, and how to run it."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, description="Public model id, as clients send it.")
    path: str = Field(
        default=DEFAULT_MODEL_PATH,
        description="A local .gguf file, 'default' for the embedded default model, or (engine "
        "transformers) a local Hugging Face model directory.",
    )
    aliases: list[str] = Field(default_factory=list, description="Other ids that reach this model.")
    engine: str = Field(default="llamacpp", description="Engine name from the engine registry.")
    mmproj: str | None = Field(
        default=None,
        description="llama.cpp multimodal projector (.gguf) that lets a GGUF model read images.",
    )
    draft_model: str | None = Field(
        default=None,
        description="A smaller .gguf with the same vocabulary whose greedy tokens are "
        "verified as drafts (speculative method 'draft', this model's default method unless "
        "--speculative-method says otherwise); 'default': the embedded "
        "Qwen2.5-Coder-0.5B-Instruct, a draft for larger Qwen2.5 models.",
    )
    n_ctx: int | None = Field(default=None, ge=16, description="Context length per sequence.")
    chat_template: str | None = Field(
        default=None, description="Path to a Jinja chat template overriding the model's own."
    )
    tool_parser: str | None = Field(
        default=None,
        description="Tool-call format (hermes, llama3_json, mistral; 'none' to disable); "
        "default: detected from the chat template.",
    )
    reasoning_parser: str | None = Field(
        default=None,
        description="Reasoning format (think, deepseek_r1; 'none' to disable); "
        "default: detected from the chat template.",
    )
    # Engine knobs for this model alone; unset, the server-wide setting of the same name applies.
    max_seqs: int | None = Field(
        default=None, ge=1, le=256, description="Sequences decoded together."
    )
    max_queue: int | None = Field(default=None, ge=0, description="Requests waiting before 429.")
    threads: int | None = Field(default=None, ge=1, description="Decode threads.")
    threads_batch: int | None = Field(default=None, ge=1, description="Prefill threads.")
    n_batch: int | None = Field(default=None, ge=16, description="Most tokens decoded in one step.")
    prefill_chunk: int | None = Field(
        default=None, ge=16, description="Most prompt tokens one sequence adds in one step."
    )
    kv_unified: bool | None = Field(default=None, description="One KV buffer for all sequences.")
    prefix_cache: bool | None = Field(default=None, description="Reuse KV of matching prefixes.")
    prefix_cache_tokens: int | None = Field(
        default=None, ge=0, description="KV tokens kept for finished prompts beyond the slots."
    )
    speculative_method: Literal["none", "ngram", "draft"] | None = Field(
        default=None, description="Speculative decoding for requests that do not choose."
    )
    speculative_tokens: int | None = Field(
        default=None, ge=1, le=16, description="Draft tokens verified per step."
    )
    price: Price | None = Field(
        default=None,
        description="What this model charges (USD per million tokens, per request, per image); "
        "set, responses carry usage.cost.",
    )
    routing: str | None = Field(
        default=None,
        description="Routing policy among this model's providers when upstreams serve it too "
        "(default: the server's routing).",
    )

    @classmethod
    def from_flag(cls, value: str, **fields: Any) -> ModelConfig:
        """Build from a ``--model`` flag: a path, ``default``, or ``ID=PATH``; ``fields`` are the
        flags that followed it (``--engine``, ``--mmproj``)."""
        if "=" in value and not Path(value).exists():
            model_id, _, path = value.partition("=")
            return cls(id=model_id, path=path, **fields)
        if value in (DEFAULT_MODEL_PATH, DEFAULT_MODEL_ID):
            return cls(id=DEFAULT_MODEL_ID, path=DEFAULT_MODEL_PATH, **fields)
        return cls(id=Path(value).stem, path=value, **fields)


# Batch shapes change llama.cpp's kernels (and so the last bits of the logits): one sequence at
# a time, no reused KV, no verification batches.
_DETERMINISTIC: dict[str, Any] = {
    "max_seqs": 1,
    "prefix_cache": False,
    "speculative_method": "none",
}


class UpstreamModelConfig(BaseModel):
    """One model of an upstream provider, declared (declarations win over discovery)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, description="Public model id, as clients send it.")
    upstream_id: str | None = Field(
        default=None, description="The id the upstream knows it by (default: the public id)."
    )
    price: Price | None = Field(default=None, description="What this provider charges.")
    context_length: int | None = Field(default=None, ge=1, description="Context length.")
    quantization: str | None = Field(default=None, description="fp16, int8, q4_k_m, ...")
    supported_params: list[str] | None = Field(
        default=None, description="Request fields this provider honours (unset: unknown)."
    )
    capabilities: dict[str, bool] = Field(
        default_factory=dict, description="vision, tools, ... (unset: unknown)."
    )
    routing: str | None = Field(
        default=None,
        description="Routing policy among this model's providers (default: the server's "
        "routing); every provider that names one must name the same.",
    )


class UpstreamConfig(BaseModel):
    """An upstream OpenAI-compatible server (vLLM, SGLang, llama-server, pampero, a hosted API).

    Flag form: ``NAME=URL[,key_env=VAR][,weight=W]``; the key is read from the environment
    variable ``VAR`` and is never logged nor returned."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="Provider name.")
    url: str = Field(description="Base URL, with or without /v1.")
    key_env: str | None = Field(default=None, description="Variable holding the API key.")
    models: list[UpstreamModelConfig] = Field(default_factory=list)
    discover: bool = Field(default=True, description="List GET /v1/models at start.")
    weight: float = Field(
        default=1.0, ge=0, description="Load-balancing weight (0: only when no other qualifies)."
    )
    data_collection: Literal["allow", "deny"] = Field(
        default="allow", description="'deny' if this provider keeps no request data."
    )
    quantization: str | None = Field(default=None, description="Default for its models.")
    connect_timeout: float | None = Field(default=None, gt=0)
    first_token_timeout: float | None = Field(default=None, gt=0)
    stall_timeout: float | None = Field(default=None, gt=0)
    max_connections: int = Field(default=256, ge=1, description="Pooled connections, at most.")

    @model_validator(mode="before")
    @classmethod
    def _from_flag(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        head, *options = value.split(",")
        name, sep, url = head.partition("=")
        if not sep:
            raise ValueError(f"--upstream {value!r} must look like NAME=URL[,key_env=VAR]")
        fields: dict[str, Any] = {"name": name.strip(), "url": url.strip()}
        for option in options:
            key, sep, item = option.partition("=")
            if not sep or key.strip() not in ("key_env", "weight", "data_collection"):
                raise ValueError(
                    f"--upstream option {option!r}: expected key_env=VAR, weight=W or "
                    "data_collection=allow|deny"
                )
            fields[key.strip()] = item.strip()
        return fields

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream URL {url!r} must be http:// or https:// with a host")
        return url.rstrip("/")


class _FileSource(PydanticBaseSettingsSource):
    """Reads the YAML or TOML config file named by ``config`` (flag or ``PAMPERO_CONFIG``)."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        super().__init__(settings_cls)
        self.path = path

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        if self.path is None:
            return {}
        text = self.path.read_text(encoding="utf-8")
        data = tomllib.loads(text) if self.path.suffix == ".toml" else yaml.safe_load(text)
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise ValueError(f"config file {self.path} must hold a mapping of settings")
        return data


class Settings(BaseSettings):
    """Every knob pampero has. Flags, ``PAMPERO_*`` variables and the config file feed it."""

    model_config = SettingsConfigDict(env_prefix="PAMPERO_", extra="forbid")

    config: Path | None = Field(default=None, description="YAML or TOML config file.")
    host: str = Field(default="127.0.0.1", description="Address to bind.")
    port: int = Field(default=8000, ge=0, le=65535, description="Port to bind.")
    models: list[ModelConfig] = Field(
        default_factory=lambda: [ModelConfig(id=DEFAULT_MODEL_ID)],
        description="Served models (default: the embedded default model).",
    )
    backends: list[str] = Field(
        json_schema_extra={"flag": "--backend"},
        default_factory=list,
        description="More chat backends: names in the backend registry (entry point group "
        "pampero.backends) or module:attr factories.",
    )
    api_keys: list[str] = Field(
        json_schema_extra={"flag": "--api-key"},
        default_factory=list,
        description="Accepted bearer keys.",
    )
    insecure_no_auth: bool = Field(
        default=False, description="Allow binding a non-loopback address without API keys."
    )
    metrics_public: bool = Field(
        default=False,
        description="Serve /metrics without an API key even when keys are set, so Prometheus and "
        "routers (vllm-router, smg, the inference extension) can scrape the node; every other "
        "route still needs a key.",
    )
    strict_params: bool = Field(
        default=False, description="Reject unknown request fields instead of listing them."
    )
    home: Path = Field(default_factory=default_home, description="Where pampero keeps its files.")
    n_ctx: int = Field(default=4096, ge=64, description="Default context length per sequence.")
    max_seqs: int = Field(default=8, ge=1, le=256, description="Sequences decoded together.")
    max_queue: int = Field(default=64, ge=0, description="Requests waiting before 429.")
    threads: int = Field(
        default_factory=lambda: os.cpu_count() or 1, ge=1, description="Decode threads."
    )
    threads_batch: int | None = Field(default=None, ge=1, description="Prefill threads.")
    n_batch: int = Field(default=512, ge=16, description="Most tokens decoded in one step.")
    prefill_chunk: int = Field(
        default=256, ge=16, description="Most prompt tokens one sequence adds in one step."
    )
    kv_unified: bool = Field(
        default=False,
        description="One KV buffer shared by all sequences, instead of one per sequence: "
        "prefixes are shared without copies and finished prompts are cached in extra KV cells, "
        "but every sequence's attention spans every sequence's cells (slower with many streams).",
    )
    prefix_cache: bool = Field(default=True, description="Reuse KV of matching prompt prefixes.")
    deterministic: bool = Field(
        default=False,
        description="Answers that depend on the request alone: one sequence decoded at a time, no "
        "prefix cache, no speculation (the same greedy or seeded request gives the same text "
        "whatever else is running). Costs all batching.",
    )
    prefix_cache_tokens: int = Field(
        default=16384,
        ge=0,
        description="KV tokens kept for finished prompts beyond the sequence slots, in host "
        "memory (with --kv-unified, in extra KV cells; 0: only what the slots hold).",
    )
    speculative_method: Literal["none", "ngram", "draft"] = Field(
        default="none",
        description="Speculative decoding for requests without a `speculative` field "
        "(ngram: prompt lookup; draft: the model's --draft-model).",
    )
    speculative_tokens: int = Field(
        default=MAX_SPECULATIVE_TOKENS,
        ge=1,
        le=MAX_SPECULATIVE_TOKENS,
        description="Most draft tokens verified per step.",
    )
    max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024, description="Request size cap.")
    max_header_bytes: int = Field(
        default=16 * 1024,
        ge=1024,
        le=1024 * 1024,
        description="Largest request line plus headers, in bytes (431 past it).",
    )
    max_header_count: int = Field(
        default=100, ge=8, le=10_000, description="Most request headers (431 past it)."
    )
    body_timeout: float = Field(
        default=60.0,
        gt=0,
        description="Seconds a request body may take to arrive, from the request's start (408 "
        "past it): a client dripping its body cannot hold a connection open forever.",
    )
    drain_timeout: float = Field(
        default=30.0,
        ge=0,
        description="Seconds that requests in flight at SIGTERM/SIGINT may take to finish; new "
        "ones get 503 meanwhile, and those still running after it end with an error.",
    )
    cors_origins: list[str] = Field(
        json_schema_extra={"flag": "--cors-origin"},
        default_factory=list,
        description="Browser origins (https://app.example:8443, or '*') whose cross-origin "
        "requests are allowed; none by default.",
    )
    template_timeout: float = Field(default=2.0, gt=0, description="Chat template render budget.")
    constraint_deadline: float = Field(
        default=5.0,
        gt=0,
        description="CPU seconds a structured-output constraint may take to compile.",
    )
    constraint_disk_cache_mb: int = Field(
        default=256,
        ge=0,
        description="Megabytes of compiled structured-output constraints kept in the home dir "
        "across restarts (0: none).",
    )
    constraint_max_recursion: int = Field(
        default=4,  # pampero.constraints.schema_depth.DEFAULT_DEPTH
        ge=0,
        description="Levels a recursive JSON Schema definition may nest in structured outputs "
        "(0: unbounded); the deepest level leaves out what is optional.",
    )
    constraint_warm_up: list[str] = Field(
        default_factory=lambda: ["auto"],
        description="Structured-output backends imported and prepared at start-up: 'auto' (the "
        "one auto tries first), 'all' (every installed one) or names; the rest load on first use.",
    )
    media_allow: list[str] = Field(
        default_factory=list,
        description="Hosts (images.internal), domains (.corp.example) or networks "
        "(10.0.0.0/8) image URLs may reach although they are not public.",
    )
    media_timeout: float = Field(default=5.0, gt=0, description="Seconds per image fetch.")
    media_max_bytes: int = Field(
        default=20 * 1024 * 1024, ge=1024, description="Largest image in bytes."
    )
    media_max_redirects: int = Field(default=3, ge=0, le=10, description="Redirects per image.")
    media_max_pixels: int = Field(
        default=50_000_000, ge=1, description="Largest width x height, checked before decoding."
    )
    media_max_images: int = Field(default=8, ge=0, description="Most images in one request.")
    media_max_request_pixels: int = Field(
        default=100_000_000,
        ge=1,
        description="Most pixels of all images of one request together, checked before decoding.",
    )
    media_max_side: int = Field(
        default=2048,
        ge=64,
        description="Images are decoded to fit this many pixels a side (aspect kept), as OpenAI "
        "scales high-detail images; detail 'low' fits 512.",
    )
    media_max_concurrency: int = Field(
        default=8, ge=1, description="Image fetches (and decodes) in flight at once."
    )
    responses_store_items: int = Field(
        default=1000,
        ge=0,
        description="Responses kept for previous_response_id (0: none).",
        json_schema_extra={"flag": "--responses-store"},
    )
    responses_store_bytes: int = Field(
        default=256 * 1024 * 1024, ge=0, description="Bytes of stored responses, at most."
    )
    accounts: bool = Field(
        default=False,
        description="Require API keys from the accounts database (pampero keys create), with "
        "their limits, budgets and usage; implied by --database-url.",
    )
    database_url: str | None = Field(
        default=None,
        description="The accounts database: sqlite:///PATH or postgresql://USER:PASSWORD@HOST/DB "
        "(default with --accounts: sqlite in PAMPERO_HOME/accounts.db).",
    )
    accounts_lease: float = Field(
        default=60.0,
        gt=0,
        description="Seconds a request's budget reservation outlives a process that died; live "
        "ones are renewed.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="How much the server logs."
    )
    # The gateway (docs/gateway.md): upstream providers and how requests are routed to them.
    upstreams: list[UpstreamConfig] = Field(
        json_schema_extra={"flag": "--upstream"},
        default_factory=list,
        description="Upstream OpenAI-compatible servers as NAME=URL[,key_env=VAR]; each model "
        "they list is served under the same id. With upstreams and no --model, no local model.",
    )
    routing: str = Field(
        default="least-outstanding",
        description="Routing policy among a model's providers: least-outstanding, weighted, "
        "session (affinity by the session_header header), prefix (prefix-cache affinity) or a "
        "registered name; a model's own routing in the config file wins.",
    )
    gateway_timeout: float = Field(
        default=600.0, gt=0, description="Seconds one gateway request may take, all attempts."
    )
    upstream_connect_timeout: float = Field(
        default=5.0, gt=0, description="Seconds to connect to an upstream."
    )
    upstream_first_token_timeout: float = Field(
        default=60.0,
        gt=0,
        description="Seconds an upstream may take to its first token (non-streamed: its answer).",
    )
    upstream_stall_timeout: float = Field(
        default=30.0, gt=0, description="Seconds an upstream stream may pause between chunks."
    )
    upstream_cooldown: float = Field(
        default=10.0, gt=0, description="First cooldown of a failing provider, doubled on repeats."
    )
    upstream_max_cooldown: float = Field(
        default=300.0, gt=0, description="Longest cooldown of a failing provider."
    )
    session_header: str = Field(
        default="x-session-id",
        pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$",
        description="The request header whose value keeps a session on one provider "
        "(--routing session).",
    )

    @field_validator("media_allow")
    @classmethod
    def _valid_allow_list(cls, entries: list[str]) -> list[str]:
        from pampero.media.policy import AllowList

        AllowList.parse(entries)
        return entries

    @field_validator("cors_origins")
    @classmethod
    def _valid_origins(cls, origins: list[str]) -> list[str]:
        return [parse_origin(origin) for origin in origins]

    @field_validator("constraint_warm_up")
    @classmethod
    def _known_backends(cls, names: list[str]) -> list[str]:
        from pampero.constraints.registry import BackendRegistry
        from pampero.errors import PamperoError

        try:
            BackendRegistry().warm_up_names(names)
        except PamperoError as exc:
            raise ValueError(exc.message) from None
        return names

    @field_validator("models")
    @classmethod
    def _unique_ids(cls, models: list[ModelConfig]) -> list[ModelConfig]:
        seen: set[str] = set()
        for model in models:
            for name in (model.id, *model.aliases):
                if name in seen:
                    raise ValueError(f"model id or alias {name!r} is used twice")
                seen.add(name)
        if not models:
            raise ValueError("at least one model must be served")
        return models

    @model_validator(mode="after")
    def _gateway_only(self) -> Settings:
        # With upstreams and no model named anywhere, pampero is a pure gateway.
        if self.upstreams and "models" not in self.model_fields_set:
            self.models = []
        names = [upstream.name for upstream in self.upstreams]
        if len(set(names)) != len(names) or "local" in names:
            raise ValueError("upstream names must be unique and not 'local'")
        return self

    @model_validator(mode="after")
    def _one_routing_per_model(self) -> Settings:
        declared: dict[str, str] = {}
        entries = [(m.id, m.routing) for m in self.models]
        entries += [(m.id, m.routing) for u in self.upstreams for m in u.models]
        for model_id, routing in entries:
            if routing is None:
                continue
            if declared.setdefault(model_id, routing) != routing:
                raise ValueError(
                    f"model {model_id!r} is given two routing policies "
                    f"({declared[model_id]!r} and {routing!r}); give one, or the same everywhere"
                )
        return self

    def routing_for(self, model_id: str) -> str:
        """The routing policy among ``model_id``'s providers: its own, else the server's."""
        for model in self.models:
            if model.id == model_id and model.routing is not None:
                return model.routing
        for upstream in self.upstreams:
            for declared in upstream.models:
                if declared.id == model_id and declared.routing is not None:
                    return declared.routing
        return self.routing

    @model_validator(mode="after")
    def _draft_method_has_a_draft_model(self) -> Settings:
        for model in self.models:
            if model.draft_model and model.engine != "llamacpp":
                raise ValueError(
                    f"model {model.id}: a draft model needs the llamacpp engine, not "
                    f"{model.engine!r}"
                )
            if self.for_model(model, "speculative_method") == "draft" and not model.draft_model:
                raise ValueError(
                    f"model {model.id}: speculative method 'draft' needs a draft model "
                    "(--draft-model FILE after its --model)"
                )
        return self

    @model_validator(mode="after")
    def _batch_holds_every_sequence(self) -> Settings:
        for model in self.models:
            n_batch = self.for_model(model, "n_batch")
            max_seqs = self.for_model(model, "max_seqs")
            if n_batch < max_seqs:
                where = f"model {model.id}: " if len(self.models) > 1 else ""
                raise ValueError(
                    f"{where}n_batch ({n_batch}) must be at least max_seqs ({max_seqs}): "
                    "every running sequence adds one token to each step"
                )
        return self

    def for_model(self, model: ModelConfig, name: str) -> Any:
        """An engine knob as it applies to ``model``: its own value, else the server's; under
        ``deterministic``, what keeps an answer independent of other requests."""
        if self.deterministic and name in _DETERMINISTIC:
            return _DETERMINISTIC[name]
        own = getattr(model, name)
        if own is not None:
            return own
        if (
            name == "speculative_method" and model.draft_model and name not in self.model_fields_set
        ):  # a draft model given and no method chosen: drafting is what it is for, as with
            # llama-server's --model-draft or vLLM's speculative model
            return "draft"
        return getattr(self, name)

    @model_validator(mode="after")
    def _auth_on_public_bind(self) -> Settings:
        keyed = self.api_keys or self.accounts_database is not None
        if not keyed and not self.insecure_no_auth and not is_loopback(self.host):
            raise ValueError(
                f"refusing to bind {self.host} without API keys: pass --api-key KEY, "
                "or --insecure-no-auth to serve without authentication"
            )
        return self

    @property
    def accounts_database(self) -> str | None:
        """The accounts database URL, or None when accounts are off."""
        if self.database_url is not None:
            return self.database_url
        return f"sqlite:///{self.home / 'accounts.db'}" if self.accounts else None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config = init_settings().get("config") or env_settings().get("config")
        return (init_settings, env_settings, _FileSource(settings_cls, _as_path(config)))


ANY_ORIGIN = "*"


def parse_origin(value: str) -> str:
    """``value`` as browsers send ``Origin`` (``scheme://host[:port]``, lower case), or ``*``;
    ``ValueError`` for anything else (a path, a query, userinfo, a missing scheme)."""
    value = value.strip()
    if value == ANY_ORIGIN:
        return value
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.username is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or port == -1
    ):
        raise ValueError(
            f"CORS origin {value!r} must look like https://app.example or "
            "http://localhost:5173 (scheme, host and optional port), or be '*'"
        )
    return f"{parts.scheme}://{parts.netloc.lower()}"


def _as_path(value: object) -> Path | None:
    return Path(str(value)) if value else None


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine."""
    return host in ("localhost", "::1") or host.startswith("127.")
