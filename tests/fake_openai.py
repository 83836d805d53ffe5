"""An in-process OpenAI-protocol server for tests, with injected faults.

Speaks ``POST /v1/chat/completions`` and ``POST /v1/moderations`` on 127.0.0.1 (a free
port) from a background thread. Answers are derived from the request: the completion
ends ``#score: 5`` when the prompt contains ``HARM`` (``#score: 1`` otherwise, and no
score at all when it contains ``GARBLE``); moderation flags inputs containing ``HARM``.
A test can pass ``chat=`` (or set ``server.chat``), a function from the prompt text (the
request's messages joined) to the completion text, to answer in another judge's format.
``completion=`` (a function from the request to the response body) serves
``POST /v1/completions``, and ``models=`` (entries of ``GET /v1/models``) the listing.

Faults: each attempt at a given request body fails with probability ``fault_rate``
(429, 500, a hang past the client timeout, or a malformed body), decided by a hash of
the body and the attempt number (so runs are reproducible), and never more than
``max_faults`` times for one body (so a client with enough retries always succeeds).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAULTS = ("429", "500", "hang", "malformed")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    app: FakeOpenAI


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_GET(self) -> None:
        app = self.server.app
        if self.headers.get("Authorization") != f"Bearer {app.key}":
            self._send(401, b'{"error": {"message": "bad key"}}')
        elif self.path.endswith("/models"):
            self._send(200, json.dumps({"object": "list", "data": app.models}).encode())
        else:
            self._send(404, b'{"error": {"message": "no such route"}}')

    def do_POST(self) -> None:
        app = self.server.app
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with app.lock:
            app.requests += 1
            app.in_flight += 1
            app.max_in_flight = max(app.max_in_flight, app.in_flight)
        try:
            self._handle(app, body)
        finally:
            with app.lock:
                app.in_flight -= 1

    def _handle(self, app: FakeOpenAI, body: bytes) -> None:
        if self.headers.get("Authorization") != f"Bearer {app.key}":
            offered = self.headers.get("Authorization", "")
            err = {"error": {"message": f"Incorrect API key provided: {offered}",
                             "type": "invalid_request_error", "code": "invalid_api_key"}}
            self._send(401, json.dumps(err).encode())
            return
        if app.delay:
            time.sleep(app.delay)
        digest = hashlib.sha256(body).hexdigest()
        with app.lock:
            attempt = app.attempts[digest]
            app.attempts[digest] += 1
        fault = app.fault_for(digest, attempt)
        if fault is not None:
            with app.lock:
                app.faults[fault] += 1
            self._fault(fault, digest)
            return
        request = json.loads(body)
        if self.path.endswith("/chat/completions"):
            answer = app.chat_answer(request)
        elif self.path.endswith("/moderations"):
            answer = app.moderation_answer(request)
        elif self.path.endswith("/completions") and app.completion is not None:
            try:
                answer = app.completion(request)
            except LookupError as exc:  # e.g. an unknown model
                self._send(404, json.dumps({"error": {"message": str(exc)}}).encode())
                return
        else:
            self._send(404, b'{"error": {"message": "no such route"}}')
            return
        with app.lock:
            app.served[digest] += 1
        self._send(200, json.dumps(answer).encode())

    def _fault(self, fault: str, digest: str) -> None:
        app = self.server.app
        if fault == "429":
            self._send(429, b'{"error": {"message": "slow down", "type": "requests"}}',
                       {"retry-after-ms": "5"})
        elif fault == "500":
            self._send(500, b'{"error": {"message": "boom", "type": "server_error"}}')
        elif fault == "hang":
            time.sleep(app.hang)
            self._send(500, b'{"error": {"message": "too late"}}')
        elif int(digest[:2], 16) % 2:
            self._send(200, b'{"id": "x", "choices": [{"mess')  # truncated JSON
        else:
            self._send(200, b'{"id": "x", "object": "surprise"}')  # the wrong shape


class FakeOpenAI:
    """Run with ``with FakeOpenAI(key) as server: ... server.url``."""

    def __init__(self, key: str, fault_rate: float = 0.0, max_faults: int = 3,
                 hang: float = 0.8, delay: float = 0.0, always_fail: bool = False,
                 chat: Callable[[str], str] | None = None,
                 completion: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                 models: list[dict[str, Any]] | None = None) -> None:
        self.key = key
        self.chat = chat
        self.completion = completion
        self.models = models or [{"id": "fake-judge", "object": "model", "owned_by": "me"}]
        self.fault_rate = fault_rate
        self.max_faults = max_faults
        self.hang = hang
        self.delay = delay
        self.always_fail = always_fail
        self.lock = threading.Lock()
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.attempts: Counter[str] = Counter()
        self.served: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def fault_for(self, digest: str, attempt: int) -> str | None:
        if self.always_fail:
            return "500"
        if attempt >= self.max_faults:
            return None
        draw = int(hashlib.sha256(f"{digest}:{attempt}".encode()).hexdigest()[:8], 16)
        if (draw % 10_000) / 10_000 >= self.fault_rate:
            return None
        return FAULTS[(draw // 10_000) % len(FAULTS)]

    def chat_answer(self, request: dict[str, Any]) -> dict[str, Any]:
        prompt = "".join(str(m.get("content", "")) for m in request["messages"])
        if self.chat is not None:
            text = self.chat(prompt)
        elif "GARBLE" in prompt:
            text = "I would rather not put a number on this one."
        else:
            score = 5 if "HARM" in prompt else 1
            text = (f"The response {'complies fully' if score == 5 else 'declines'}.\n"
                    f"#reason: fake judge saw {'HARM' if score == 5 else 'nothing'}\n"
                    f"#score: {score}")
        return {"id": "chatcmpl-fake", "object": "chat.completion", "created": 0,
                "model": request.get("model", "?"),
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}

    @staticmethod
    def moderation_answer(request: dict[str, Any]) -> dict[str, Any]:
        text = request["input"]
        flagged = "HARM" in text
        categories = {"violence": flagged, "illicit": flagged, "hate": False}
        scores = {"violence": 0.93 if flagged else 0.01, "illicit": 0.5 if flagged else 0.0,
                  "hate": 0.002}
        return {"id": "modr-fake", "model": request.get("model", "?"),
                "results": [{"flagged": flagged, "categories": categories,
                             "category_scores": scores}]}

    def __enter__(self) -> FakeOpenAI:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.app = self
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
