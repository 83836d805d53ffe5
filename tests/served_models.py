"""Local Hugging Face model directories served through ``POST /v1/completions``, the way
vLLM serves them, for :class:`tests.fake_openai.FakeOpenAI` (``completion=``).

A request's ``prompt`` is a list of token ids (or text, encoded without special tokens);
the model continues it with aligndepth's own sampler (so a served row with seed s is the
local engine's row with seed s) for ``max_tokens``, and the server then stops as vLLM
does: at the first stop token id (``stop_token_ids`` and the model's EOS; the id is part
of ``token_ids``) or where a ``stop`` string appears (the tokens up to the one completing
it are in ``token_ids``; the text ends before the string), whichever comes first.
``token_ids`` are returned when the request asks for them (``return_token_ids``).
``shift`` returns token ids moved by that much (a server whose tokenizer differs).
``wrong`` (from a request's prompt, as text, to a fault or ``None``) makes the server
answer some prompts wrongly: ``half_prompt`` answers the prompt's first half (and says so
in ``usage.prompt_tokens``), ``two_choices`` returns the choice twice, ``no_usage`` leaves
``usage`` out (a truthful answer). ``answered`` counts the distinct requests answered
truthfully.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aligndepth.engine import SamplingParams, StopRule, generate, model_stop_ids
from aligndepth.models import LoadConfig, load_model
from aligndepth.prompts import pad_token_id


class ServedModels:
    def __init__(self, dirs: dict[str, Path], owned_by: str = "vllm", shift: int = 0,
                 wrong: Callable[[str], str | None] | None = None) -> None:
        self.loaded = {name: load_model(path, LoadConfig(device="cpu", dtype="float32"))
                       for name, path in dirs.items()}
        self.dirs = dirs
        self.owned_by = owned_by
        self.shift = shift
        self.wrong = wrong
        self.answered: set[str] = set()
        self.lock = threading.Lock()
        self.generated = 0
        self.busy = 0.0  # seconds spent generating (the server's own compute)

    def models(self) -> list[dict[str, Any]]:
        return [{"id": name, "object": "model", "owned_by": self.owned_by,
                 "root": str(self.dirs[name]),
                 "max_model_len": m.model.config.max_position_embeddings}
                for name, m in self.loaded.items()]

    def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        name = request.get("model")
        if name not in self.loaded:
            raise LookupError(f"The model `{name}` does not exist.")
        m = self.loaded[name]
        tok = m.tokenizer
        prompt = request["prompt"]
        ids = list(prompt) if isinstance(prompt, list) else list(
            tok(prompt, add_special_tokens=False).input_ids)
        fault = self.wrong(tok.decode(ids)) if self.wrong is not None else None
        if fault == "half_prompt":
            ids = ids[:len(ids) // 2]
        top_k = int(request.get("top_k", -1))
        params = SamplingParams(float(request.get("temperature", 1.0)), max(0, top_k),
                                float(request.get("top_p", 1.0)))
        with self.lock:
            started = time.perf_counter()
            [row] = generate(m.model, [ids], params, max_new_tokens=int(request["max_tokens"]),
                             stop=StopRule(), pad_id=pad_token_id(tok),
                             seeds=[int(request.get("seed", 0))], tokenizer=tok)
            self.generated += 1
            self.busy += time.perf_counter() - started
        raw = list(row.ids)
        stop_ids = set(request.get("stop_token_ids") or ()) | model_stop_ids(tok, m.model)
        end, text, finish = len(raw), None, "length"
        for i, t in enumerate(raw):
            if t in stop_ids:
                end, text, finish = i + 1, tok.decode(raw[:i], skip_special_tokens=True), "stop"
                break
        for j in range(1, end + 1):  # a stop string completed before that?
            decoded = tok.decode(raw[:j], skip_special_tokens=True)
            hits = [decoded.index(s) for s in request.get("stop") or () if s in decoded]
            if hits:
                end, text, finish = j, decoded[:min(hits)], "stop"
                break
        token_ids = raw[:end]
        if text is None:
            text = tok.decode(token_ids, skip_special_tokens=True)
        choice: dict[str, Any] = {"index": 0, "text": text, "finish_reason": finish,
                                  "stop_reason": None, "logprobs": None}
        if request.get("return_token_ids"):
            choice["token_ids"] = [(t + self.shift) % len(tok) for t in token_ids]
        answer = {"id": "cmpl-served", "object": "text_completion", "created": 0,
                  "model": name, "choices": [choice, dict(choice, index=1)]
                  if fault == "two_choices" else [choice],
                  "usage": {"prompt_tokens": len(ids), "completion_tokens": len(token_ids),
                            "total_tokens": len(ids) + len(token_ids)}}
        if fault == "no_usage":
            del answer["usage"]
        if fault in (None, "no_usage"):
            with self.lock:
                self.answered.add(json.dumps(request, sort_keys=True))
        return answer
