"""A fake engine that plugs in through the engine registry: ``engine: tests.fake_engine:create``.

It is pampero's real ``BatchedEngine`` and scheduler over ``FakeRunner`` (exact KV bookkeeping,
no model) and ``ByteTokenizer`` (one token per byte), so everything above the engine (routes,
backends, serving, SSE, usage, errors, disconnects) runs for real, in process, in milliseconds.
The "model" writes lowercase letters that depend on its whole context (``letters``) and never
ends on its own: ``max_tokens`` bounds every answer.
"""

from __future__ import annotations

from pampero.engines.base import Capabilities, Engine
from pampero.engines.batched import BatchedEngine, LoadedModel
from pampero.engines.scheduler import SchedulerConfig, Vocabulary
from pampero.settings import ModelConfig, Settings
from tests.fakes import ByteTokenizer, FakeRunner

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def create(model: ModelConfig, settings: Settings) -> Engine:
    n_ctx = model.n_ctx or settings.n_ctx

    def load() -> LoadedModel:
        tokenizer = ByteTokenizer()
        runner = FakeRunner(
            n_vocab=tokenizer.vocab_size,
            n_batch=settings.n_batch,
            n_ctx_seq=n_ctx,
            max_seqs=settings.max_seqs,
        )
        vocabulary = Vocabulary(
            pieces=[tokenizer.token_bytes(i) for i in range(tokenizer.vocab_size)],
            special_ids=frozenset(range(256, tokenizer.vocab_size)),
            eog_ids=tokenizer.eog_token_ids,
        )
        return LoadedModel(
            runner=runner,
            tokenizer=tokenizer,
            vocabulary=vocabulary,
            capabilities=Capabilities(context_length=n_ctx),
            chat_template=CHATML,
            close=lambda: None,
        )

    config = SchedulerConfig(
        max_seqs=settings.max_seqs,
        prefill_chunk=settings.prefill_chunk,
        max_queue=settings.max_queue,
    )
    return BatchedEngine(model.id, load, config)
