"""One chat-completions call through the `openai` client, with its failures sorted into kinds.

Retries with exponential backoff and jitter on 408/409/429/5xx, timeouts and connection errors are the
client's own (`max_retries`; it honours Retry-After). What is left after them is an `LLMFailure`
whose `kind` the stage records per row. A response is usable only if it has non-empty text, was not
cut off by max_tokens, and does not smuggle an image placeholder or a role marker into the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import openai

from pipeline.templating import IMAGE_TOKEN

_ROLE_MARKERS = ("<|im_start|>", "<|im_end|>", "<|eot_id|>", "### Human:", "### Assistant:")


@dataclass(frozen=True)
class Completion:
    content: str
    usage: dict[str, int]
    model: str | None


class LLMFailure(Exception):
    """A request that failed for good (after the client's retries), or returned unusable text."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind  # rate_limited | server_error | timeout | connection | http_error | malformed
        self.detail = detail


def unusable(content: Any, finish_reason: str | None) -> str | None:
    """Why a response text cannot go into the dataset (None when it can)."""
    if not isinstance(content, str) or not content.strip():
        return "empty or missing message content"
    if finish_reason == "length":
        return "truncated at max_tokens"
    if IMAGE_TOKEN in content:
        return f"contains the image token {IMAGE_TOKEN}"
    marker = next((m for m in _ROLE_MARKERS if m in content), None)
    if marker:
        return f"contains the chat-template marker {marker!r}"
    return None


class ChatClient:
    def __init__(self, base_url: str | None, api_key: str, timeout_s: float, max_retries: int) -> None:
        self._client = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout_s,
                                     max_retries=max_retries)

    def complete(self, body: dict[str, Any]) -> Completion:
        try:
            response = self._client.chat.completions.create(**body)
        except openai.RateLimitError as exc:
            raise LLMFailure("rate_limited", _short(exc)) from None
        except openai.APITimeoutError as exc:
            raise LLMFailure("timeout", _short(exc)) from None
        except openai.APIConnectionError as exc:
            raise LLMFailure("connection", _short(exc)) from None
        except openai.InternalServerError as exc:
            raise LLMFailure("server_error", _short(exc)) from None
        except openai.APIStatusError as exc:
            raise LLMFailure("http_error", f"HTTP {exc.status_code}: {_short(exc)}") from None
        except Exception as exc:  # noqa: BLE001 - a body the client cannot parse is a malformed response
            raise LLMFailure("malformed", f"{type(exc).__name__}: {_short(exc)}") from None
        try:
            choice = response.choices[0]
            content, finish = choice.message.content, choice.finish_reason
        except (AttributeError, IndexError, TypeError) as exc:
            raise LLMFailure("malformed", f"no choices in response: {type(exc).__name__}") from None
        problem = unusable(content, finish)
        if problem:
            raise LLMFailure("malformed", problem)
        usage = response.usage
        tokens = {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens} if usage else {}
        return Completion(content.strip(), tokens, getattr(response, "model", None))

    def close(self) -> None:
        self._client.close()


def _short(exc: BaseException) -> str:
    return str(exc).replace("\n", " ")[:300]
