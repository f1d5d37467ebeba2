"""The default engine: a GGUF model run by llama.cpp with continuous batching."""

from __future__ import annotations

from pathlib import Path

from pampero.assets import ensure_default_model
from pampero.engines.base import Capabilities
from pampero.engines.batched import BatchedEngine, LoadedModel
from pampero.engines.scheduler import SchedulerConfig, Vocabulary
from pampero.settings import DEFAULT_MODEL_PATH, ModelConfig, Settings


def resolve_model_path(model: ModelConfig, settings: Settings) -> Path:
    """The local file for a model entry; ``default`` is the embedded default model."""
    if model.path == DEFAULT_MODEL_PATH:
        return ensure_default_model(settings.home)
    return Path(model.path).expanduser()


def create(model: ModelConfig, settings: Settings) -> BatchedEngine:
    # Imported here so that merely listing engines never loads llama.cpp.
    from pampero.engines.llamacpp.runner import LlamaRunner, RunnerConfig

    def load() -> LoadedModel:
        runner = LlamaRunner(
            RunnerConfig(
                path=resolve_model_path(model, settings),
                n_ctx_seq=model.n_ctx or settings.n_ctx,
                max_seqs=settings.max_seqs,
                n_batch=settings.n_batch,
                threads=settings.threads,
                threads_batch=settings.threads_batch or settings.threads,
                kv_unified=settings.kv_unified,
                mmproj=Path(model.mmproj).expanduser() if model.mmproj else None,
            )
        )
        tok = runner.tokenizer
        return LoadedModel(
            runner=runner,
            tokenizer=tok,
            vocabulary=Vocabulary(tok.pieces, tok.special_ids, tok.eog_token_ids),
            capabilities=Capabilities(
                context_length=runner.n_ctx_seq,
                supports_tools=bool(runner.chat_template and "tools" in runner.chat_template),
                supports_images=runner.supports_images,
            ),
            chat_template=runner.chat_template,
            close=runner.close,
        )

    return BatchedEngine(
        model.id,
        load,
        SchedulerConfig(
            max_seqs=settings.max_seqs,
            prefill_chunk=settings.prefill_chunk,
            max_queue=settings.max_queue,
            prefix_cache=settings.prefix_cache,
            share_prefixes=settings.kv_unified,
        ),
    )
