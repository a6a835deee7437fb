"""A local HTTP server that speaks the OpenAI chat-completions API, for tests and benchmarks.

It stands in for a hosted LLM (the one part of the world tests cannot reach). By default it answers
like a well-behaved model: a rewrite request gets the reference answer back, reworded; a reasoning
request gets evidence -> inference -> answer built from the labels in the prompt. `behaviour` can be
replaced to script failures per request (429, 500, a stall past the client's timeout, malformed or
hallucinated output). It counts requests and the most requests it ever had in flight at once.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int = 200
    content: str | None = None  # assistant text; None = the default well-behaved answer
    raw: bytes | None = None  # a raw body instead of a chat completion (malformed responses)
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    finish_reason: str = "stop"


def user_text(body: dict[str, Any]) -> str:
    return next(m["content"] for m in body["messages"] if m["role"] == "user")


def labels_in(body: dict[str, Any]) -> dict[str, Any]:
    match = re.search(r"^Labels: (.*)$", user_text(body), re.MULTILINE)
    return json.loads(match.group(1)) if match else {}


def grounded_answer(body: dict[str, Any]) -> str:
    """What a careful model would write: only the facts in the prompt."""
    text = user_text(body)
    reference = re.search(r"Reference answer: (.*?)\nRewrite the reference answer", text, re.DOTALL)
    if reference:
        return "In plain words: " + reference.group(1).strip()
    labels = labels_in(body)
    aus = labels.get("action_units", [])
    evidence = ", ".join(f"{au['code']} ({au['name']}) at a {au['level']} level" for au in aus)
    return (f"Looking at the face, I can see {evidence or 'very little muscle activity'}. "
            f"Taken together this fits the label. Answer: {labels.get('emotion')}.")


class FakeOpenAI:
    def __init__(self, latency_s: float = 0.0) -> None:
        self.latency_s = latency_s
        self.behaviour: Callable[[dict[str, Any], int], Reply] = lambda body, n: Reply()
        self.requests: list[dict[str, Any]] = []
        self.headers_seen: list[dict[str, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with server._lock:
                    server.requests.append(body)
                    server.headers_seen.append({k.lower(): v for k, v in self.headers.items()})
                    n = len(server.requests)
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    reply = server.behaviour(body, n)
                    time.sleep(server.latency_s + reply.delay_s)
                    self._send(reply, body, n)
                finally:
                    with server._lock:
                        server.in_flight -= 1

            def _send(self, reply: Reply, body: dict[str, Any], n: int) -> None:
                if reply.raw is not None:
                    payload = reply.raw
                elif reply.status != 200:
                    payload = json.dumps({"error": {"message": f"scripted HTTP {reply.status}",
                                                    "type": "server_error", "code": None}}).encode()
                else:
                    content = grounded_answer(body) if reply.content is None else reply.content
                    payload = json.dumps({
                        "id": f"chatcmpl-{n}", "object": "chat.completion", "created": 0,
                        "model": body.get("model", "fake"),
                        "choices": [{"index": 0, "finish_reason": reply.finish_reason,
                                     "message": {"role": "assistant", "content": content}}],
                        "usage": {"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70},
                    }).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 512

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
