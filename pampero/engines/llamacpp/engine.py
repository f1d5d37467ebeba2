"""The default engine: a GGUF model run by llama.cpp with continuous batching."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

from pampero.assets import resolve_model_path
from pampero.engines.base import EngineOptions
from pampero.engines.batched import BatchedEngine, LoadedModel
from pampero.engines.drafter import ModelDrafter
from pampero.engines.scheduler import SchedulerConfig, Vocabulary
from pampero.errors import EngineError
from pampero.inference import Capabilities

if TYPE_CHECKING:
    from pampero.engines.llamacpp.runner import LlamaRunner

# llama.cpp's LLAMA_MAX_SEQ; the prefix cache takes at most this many ids of its own.
_MAX_SEQ_IDS = 256
_CACHE_SEQS = 32


def create(options: EngineOptions) -> BatchedEngine:
    # Imported here so that merely listing engines never loads llama.cpp.
    from pampero.engines.llamacpp.runner import LlamaRunner, RunnerConfig

    cache_tokens = options.prefix_cache_tokens if options.prefix_cache else 0
    # Unified, the cache's histories are extra sequence ids over cache_tokens extra cells;
    # split (the default), they are kept in host memory and take no KV cells.
    cache_in_host = not options.kv_unified
    cache_seqs = 0
    if cache_tokens and not cache_in_host:
        cache_seqs = min(_CACHE_SEQS, _MAX_SEQ_IDS - options.max_seqs)

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
                cache_seqs=cache_seqs,
                cache_cells=cache_tokens if cache_seqs else 0,
            )
        )
        tok = runner.tokenizer
        draft_runner = None
        if options.draft_model:
            try:
                draft_runner = _draft_runner(runner, options)
            except BaseException:
                runner.close()
                raise
        drafter = ModelDrafter(draft_runner) if draft_runner is not None else None
        return LoadedModel(
            runner=runner,
            tokenizer=tok,
            vocabulary=Vocabulary(tok.pieces, tok.special_ids, tok.eog_token_ids),
            capabilities=Capabilities(
                context_length=runner.n_ctx_seq,
                supports_tools=bool(runner.chat_template and "tools" in runner.chat_template),
                supports_images=runner.supports_images,
                has_draft_model=drafter is not None,
            ),
            chat_template=runner.chat_template,
            close=functools.partial(_close, runner, draft_runner),
            drafter=drafter,
        )

    return BatchedEngine(
        options.model_id,
        load,
        SchedulerConfig(
            max_seqs=options.max_seqs,
            prefill_chunk=options.prefill_chunk,
            max_queue=options.max_queue,
            prefix_cache=options.prefix_cache,
            share_prefixes=True,
            speculative=options.speculative,
            cache_seqs=cache_seqs,
            cache_tokens=cache_tokens,
            cache_in_host=cache_in_host,
        ),
    )


def _draft_runner(target: LlamaRunner, options: EngineOptions) -> LlamaRunner:
    """The draft model: one sequence per slot of the target, at most the target's context, and
    exactly the target's vocabulary (a draft token must mean the same token to both)."""
    from pampero.engines.llamacpp.runner import LlamaRunner, RunnerConfig

    assert options.draft_model is not None
    path = resolve_model_path(options.draft_model, options.home)  # "default": the embedded one
    draft = LlamaRunner(
        RunnerConfig(
            path=path,
            n_ctx_seq=target.n_ctx_seq,
            max_seqs=options.max_seqs,
            n_batch=options.n_batch,
            threads=options.threads,
            threads_batch=options.threads_batch,
            kv_unified=options.kv_unified,
        )
    )
    if draft.tokenizer.pieces != target.tokenizer.pieces:
        draft.close()
        raise EngineError(
            f"draft model {path} does not have the vocabulary of {options.model_id} "
            f"({draft.n_vocab} tokens against {target.n_vocab}, or the same count with other "
            "tokens): a draft model must share the target's tokenizer"
        )
    return draft


def _close(runner: LlamaRunner, draft: LlamaRunner | None) -> None:
    if draft is not None:
        draft.close()
    runner.close()
