"""The default engine: a GGUF model run by llama.cpp with continuous batching."""

from __future__ import annotations

from pathlib import Path

from pampero.assets import resolve_model_path
from pampero.engines.base import EngineOptions
from pampero.engines.batched import BatchedEngine, LoadedModel
from pampero.engines.scheduler import SchedulerConfig, Vocabulary
from pampero.inference import Capabilities


def create(options: EngineOptions) -> BatchedEngine:
    # Imported here so that merely listing engines never loads llama.cpp.
    from pampero.engines.llamacpp.runner import LlamaRunner, RunnerConfig

    def load() -> LoadedModel:
        runner = LlamaRunner(
            RunnerConfig(
                path=resolve_model_path(options.path, options.home),
                n_ctx_seq=options.n_ctx,
                max_seqs=options.max_seqs,
                n_batch=options.n_batch,
                threads=options.threads,
                threads_batch=options.threads_batch,
                kv_unified=options.kv_unified,
                mmproj=Path(options.mmproj).expanduser() if options.mmproj else None,
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
        options.model_id,
        load,
        SchedulerConfig(
            max_seqs=options.max_seqs,
            prefill_chunk=options.prefill_chunk,
            max_queue=options.max_queue,
            prefix_cache=options.prefix_cache,
            share_prefixes=options.kv_unified,
        ),
    )
