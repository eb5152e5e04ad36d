"""Any OpenAI-compatible chat API (OpenAI, Zhipu GLM, DeepSeek, DashScope, vLLM, TGI, Ollama,
llama.cpp server), streamed through the official ``openai`` SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import httpx
import openai

from streamrag.llm.base import ChatMessage, LLMDelta, LLMError


class OpenAIChat:
    """Streams chat completions; closing the stream closes the HTTP response at once."""

    def __init__(
        self,
        model: str,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        connect_timeout: float = 10.0,
    ) -> None:
        self.model = model
        self._client = openai.AsyncOpenAI(
            base_url=base_url,
            api_key=api_key or "unused",
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            max_retries=0,  # a retry mid-answer would repeat tokens; the caller decides
        )

    @property
    def name(self) -> str:
        return f"api:{self.model}"

    async def stream(
        self, messages: Sequence[ChatMessage], *, max_tokens: int, temperature: float
    ) -> AsyncIterator[LLMDelta]:
        try:
            response = await self._client.chat.completions.create(
                model=self.model,
                messages=list(messages),  # type: ignore[arg-type]
                max_tokens=max_tokens,
                temperature=temperature,
                stream=True,
                stream_options={"include_usage": True},
            )
        except openai.APIError as exc:
            raise _llm_error(exc) from exc
        try:
            async for chunk in response:
                usage = chunk.usage
                for choice in chunk.choices:
                    text = (choice.delta.content or "") if choice.delta else ""
                    if text or choice.finish_reason:
                        yield LLMDelta(text=text, finish_reason=choice.finish_reason)
                if usage is not None:
                    yield LLMDelta(
                        prompt_tokens=usage.prompt_tokens,
                        completion_tokens=usage.completion_tokens,
                    )
        except openai.APIError as exc:
            raise _llm_error(exc) from exc
        except httpx.HTTPError as exc:
            raise LLMError(
                "upstream_disconnected", f"the LLM stream broke: {exc!r}", retryable=True
            ) from exc
        finally:
            await response.close()


def _llm_error(exc: openai.APIError) -> LLMError:
    if isinstance(exc, openai.APITimeoutError):
        return LLMError(
            "upstream_timeout", f"the LLM did not answer in time: {exc}", retryable=True
        )
    if isinstance(exc, openai.APIConnectionError):
        return LLMError("upstream_unreachable", f"cannot reach the LLM: {exc}", retryable=True)
    if isinstance(exc, openai.APIStatusError):
        retryable = exc.status_code in (408, 409, 429) or exc.status_code >= 500
        return LLMError(
            f"upstream_{exc.status_code}",
            f"the LLM answered {exc.status_code}: {exc.message}",
            retryable=retryable,
        )
    return LLMError("upstream_error", f"the LLM stream failed: {exc}", retryable=True)
