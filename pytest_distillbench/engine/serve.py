"""A small OpenAI-compatible ``/v1/completions`` and ``/v1/chat/completions`` server over one
transformers checkpoint.

It exists so the ``api`` backend can be tested end to end against a real HTTP server on this
machine, and so a user without vLLM can serve a local checkpoint to try the backend. It speaks the
part of the completions protocol that lm-eval's ``local-completions`` model sends: prompts as text
or token ids (single or batched), greedy decoding with ``stop`` and ``max_tokens``, and
``logprobs`` with ``echo`` for log-likelihood requests; sampling is refused, not approximated. It listens on 127.0.0.1 only, bounds
every request, and runs one model call at a time (a lock), so concurrent clients are answered in
turn. Not a production server: use vLLM (``vllm serve``) for that.

``/v1/chat/completions`` renders the messages with the checkpoint's chat template (or the one
``--chat-template FILE`` names, as vLLM's flag does) and answers as lm-eval's
``local-chat-completions`` model expects: the assistant message, ``usage``, and with
``logprobs: true`` / ``top_logprobs: k`` the log-probabilities of every generated token and its
k most likely alternatives (from the model's distribution before temperature). It samples when
``temperature`` > 0, with ``top_p`` and ``seed`` (0 when absent), reproducibly on one machine.

    python -m pytest_distillbench.serve CHECKPOINT [--port 8000] [--name NAME] [--chat-template FILE]
"""

from __future__ import annotations

import argparse
import hmac
import itertools
import json
import os
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LOOPBACK = "127.0.0.1"
# Sampling parameters this server does not implement; a request that sets them to anything other
# than the neutral value is refused rather than silently answered differently.
_NEUTRAL = {"top_p": 1, "n": 1, "best_of": 1, "presence_penalty": 0, "frequency_penalty": 0,
            "top_k": -1, "suffix": None, "logit_bias": None, "stream": False}


@dataclass(frozen=True)
class Limits:
    """Bounds on one request: body size, prompts per request, tokens generated, top log-probs."""

    max_body_bytes: int = 8 << 20
    max_prompts: int = 256
    max_tokens: int = 1024
    max_logprobs: int = 20
    socket_timeout_s: float = 120.0


class RequestError(Exception):
    """A request the server refuses; carries the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Sampling:
    """Sampled decoding: temperature > 0, nucleus ``top_p``, and the seed of the draw."""

    temperature: float
    top_p: float = 1.0
    seed: int = 0


@dataclass(frozen=True)
class Choice:
    """One completed prompt, in the shape of an OpenAI completions choice."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    logprobs: dict[str, Any] | None = field(default=None)
    tokens: tuple[tuple[int, Any], ...] = field(default=(), repr=False)  # (token, log-prob row)


class CompletionEngine:
    """Greedy decoding and echoed log-probabilities on one causal LM."""

    def __init__(self, path: str, *, dtype: str = "float32", device: str = "cpu",
                 chat_template: str | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.path = path
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        if chat_template is not None:
            self.tokenizer.chat_template = chat_template
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype))
        self.model.to(device).eval()
        self.device = device
        config = self.model.config
        self.max_positions = int(getattr(config, "n_positions", None)
                                 or getattr(config, "max_position_embeddings", None)
                                 or self.tokenizer.model_max_length)
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        self.eos_ids = frozenset(eos if isinstance(eos, list) else ([] if eos is None else [eos]))
        self._lock = threading.Lock()  # one forward pass at a time; the model is shared by threads

    # -- tokens -------------------------------------------------------------------------------
    def encode(self, prompt: str | list[int]) -> list[int]:
        if isinstance(prompt, str):
            return list(self.tokenizer(prompt, add_special_tokens=False).input_ids)
        vocab = len(self.tokenizer)
        if any(not isinstance(t, int) or isinstance(t, bool) or not 0 <= t < vocab for t in prompt):
            raise RequestError(400, f"prompt token ids must be integers in [0, {vocab})")
        return list(prompt)

    def chat_prompt(self, messages: list[dict[str, str]]) -> list[int]:
        """The messages rendered by the chat template, with the assistant's generation prompt."""
        if not getattr(self.tokenizer, "chat_template", None):
            raise RequestError(400, "this checkpoint has no chat template; start the server with "
                                    "--chat-template FILE")
        try:
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception as exc:  # jinja raises its own errors (e.g. raise_exception in a template)
            raise RequestError(400, f"the chat template cannot render these messages ({exc})") from None
        return self.encode(text)

    def _piece(self, token: int) -> str:
        return self.tokenizer.decode([token], skip_special_tokens=False)

    # -- completion ---------------------------------------------------------------------------
    def complete(self, prompt_ids: list[int], *, max_tokens: int, stop: list[str], echo: bool,
                 logprobs: int | None, sampling: Sampling | None = None) -> Choice:
        if not prompt_ids:
            raise RequestError(400, "empty prompt")
        if len(prompt_ids) > self.max_positions:
            raise RequestError(400, f"prompt has {len(prompt_ids)} tokens; this model reads at most "
                                    f"{self.max_positions}")
        with self._lock:
            return self._complete(prompt_ids, max_tokens, stop, echo, logprobs, sampling)

    def _complete(self, prompt_ids: list[int], max_tokens: int, stop: list[str], echo: bool,
                  logprobs: int | None, sampling: Sampling | None = None) -> Choice:
        import torch

        ids = torch.tensor([prompt_ids], device=self.device)
        # token k is predicted from prompt + k-1 tokens, which must fit the position table
        steps = min(max_tokens, self.max_positions - len(prompt_ids) + 1)
        prompt_rows = None
        generated: list[int] = []
        rows: list[Any] = []  # the log-probability row each generated token was chosen from
        with torch.inference_mode():
            if echo and logprobs is not None:
                prompt_rows = torch.log_softmax(self.model(input_ids=ids).logits[0].float(), dim=-1)
            if steps == 1 and prompt_rows is not None:
                # a log-likelihood request: the one greedy token comes from the pass just made
                generated, rows = [int(torch.argmax(prompt_rows[-1]))], [prompt_rows[-1]]
            elif steps > 0:
                generated, rows = self._generate(ids, steps, stop, sampling)
        finish = "length" if len(generated) == steps else "stop"
        if generated and generated[-1] in self.eos_ids:
            generated, rows, finish = generated[:-1], rows[:-1], "stop"
        text = self.tokenizer.decode(generated, skip_special_tokens=True)
        cut = _first_stop(text, stop)
        if cut is not None:
            text, finish = text[:cut], "stop"
        lp = None
        if logprobs is not None:
            positions: list[tuple[int, Any]] = []
            if prompt_rows is not None:
                positions += [(t, None if i == 0 else prompt_rows[i - 1]) for i, t in enumerate(prompt_ids)]
            positions += list(zip(generated, rows, strict=True))
            lp = self._logprobs(positions, logprobs)
        kept = _tokens_within(self._piece, generated, rows, len(text)) if cut is not None else \
            tuple(zip(generated, rows, strict=True))
        return Choice(text=(self.tokenizer.decode(prompt_ids) if echo else "") + text,
                      finish_reason=finish, prompt_tokens=len(prompt_ids),
                      completion_tokens=len(generated), logprobs=lp, tokens=kept)

    def chat_logprobs(self, choice: Choice, k: int) -> dict[str, Any]:
        """OpenAI's chat ``logprobs`` object for the tokens of the returned text."""
        import torch

        content = []
        for token, row in choice.tokens:
            piece = self._piece(token)
            top = []
            if k > 0:
                values, ids = torch.topk(row, k)
                top = [{"token": self._piece(t), "logprob": float(v), "bytes": list(self._piece(t).encode())}
                       for v, t in zip(values.tolist(), ids.tolist(), strict=True)]
            content.append({"token": piece, "logprob": float(row[token]), "bytes": list(piece.encode()),
                            "top_logprobs": top})
        return {"content": content}

    def _generate(self, ids: Any, steps: int, stop: list[str],
                  sampling: Sampling | None = None) -> tuple[list[int], list[Any]]:
        """Decoding as lm-eval's transformers backend runs it: ``generate`` with the checkpoint's
        generation config and lm-eval's own stop-sequence criteria; greedy, or sampled from a
        seeded generator state (the log-prob rows are the model's, before temperature)."""
        import torch
        from lm_eval.models.utils_hf import stop_sequences_criteria

        decoding: dict[str, Any] = {"do_sample": False}
        if sampling is not None:
            torch.manual_seed(sampling.seed)  # under the engine's lock: one draw at a time
            decoding = {"do_sample": True, "temperature": sampling.temperature, "top_p": sampling.top_p,
                        "top_k": 0}
        out = self.model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=steps, **decoding,
            stopping_criteria=stop_sequences_criteria(self.tokenizer, [s for s in stop if s], ids.shape[1], 1),
            pad_token_id=self.tokenizer.pad_token_id, return_dict_in_generate=True, output_logits=True,
        )
        tokens = out.sequences[0, ids.shape[1]:].tolist()
        rows = [torch.log_softmax(step[0].float(), dim=-1) for step in out.logits]
        return tokens, rows[:len(tokens)]

    def _logprobs(self, positions: list[tuple[int, Any]], k: int) -> dict[str, Any]:
        """OpenAI's legacy logprobs object; the chosen token always appears among the top ones."""
        import torch

        tokens, token_lp, top_lp, offsets = [], [], [], []
        offset = 0
        for token, row in positions:
            piece = self._piece(token)
            tokens.append(piece)
            offsets.append(offset)
            offset += len(piece)
            if row is None:
                token_lp.append(None)
                top_lp.append(None)
                continue
            token_lp.append(float(row[token]))
            top: dict[str, float] = {}
            if k > 0:
                values, ids = torch.topk(row, k)
                for value, tid in zip(values.tolist(), ids.tolist(), strict=True):
                    top.setdefault(self._piece(tid), float(value))  # ties in text keep the larger
            top.setdefault(piece, float(row[token]))
            top_lp.append(top)
        return {"tokens": tokens, "token_logprobs": token_lp, "top_logprobs": top_lp,
                "text_offset": offsets}


def _tokens_within(piece: Any, generated: list[int], rows: list[Any], length: int
                   ) -> tuple[tuple[int, Any], ...]:
    """The generated tokens that make up the first ``length`` characters (a stop string cut)."""
    kept, used = [], 0
    for token, row in zip(generated, rows, strict=True):
        if used >= length:
            break
        kept.append((token, row))
        used += len(piece(token))
    return tuple(kept)


def _first_stop(text: str, stop: list[str]) -> int | None:
    """Index where the earliest stop sequence starts in ``text``, or None."""
    hits = [i for s in stop if s and (i := text.find(s)) >= 0]
    return min(hits) if hits else None


def _prompts(value: Any) -> list[str | list[int]]:
    """The four prompt shapes of the protocol -> a list of single prompts."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(p, str) for p in value):
            return list(value)
        if all(isinstance(t, int) for t in value):
            return [value]
        if all(isinstance(p, list) for p in value):
            return list(value)
    raise RequestError(400, "prompt must be a string, a list of strings, a list of token ids "
                            "or a list of lists of token ids")


def _int(body: dict[str, Any], key: str, default: int | None, low: int, high: int) -> int | None:
    value = body.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RequestError(400, f"{key} must be an integer in [{low}, {high}]")
    return value


def handle_completion(engine: CompletionEngine, body: Any, limits: Limits, model_name: str,
                      counter: itertools.count) -> dict[str, Any]:
    """A parsed ``/v1/completions`` request body -> the response body."""
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object")
    if body.get("model") not in (None, model_name):
        raise RequestError(404, f"model {body.get('model')!r} is not served here; use {model_name!r}")
    for key, neutral in _NEUTRAL.items():
        if body.get(key, neutral) not in (neutral, None):
            raise RequestError(400, f"{key}={body[key]!r} is not supported by this server")
    prompts = _prompts(body.get("prompt"))
    if len(prompts) > limits.max_prompts:
        raise RequestError(413, f"{len(prompts)} prompts in one request; at most {limits.max_prompts}")
    max_tokens = _int(body, "max_tokens", 16, 0, limits.max_tokens)
    logprobs = _int(body, "logprobs", None, 0, limits.max_logprobs)
    temperature = body.get("temperature", 1.0)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or temperature != 0:
        raise RequestError(400, "this server decodes greedily only: send temperature 0")
    stop = body.get("stop") or []
    stop = [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop) or len(stop) > 16:
        raise RequestError(400, "stop must be a string or a list of at most 16 strings")
    echo = bool(body.get("echo", False))
    choices = []
    for prompt in prompts:
        choices.append(engine.complete(engine.encode(prompt), max_tokens=int(max_tokens or 0),
                                       stop=stop, echo=echo, logprobs=logprobs))
    prompt_tokens = sum(c.prompt_tokens for c in choices)
    completion_tokens = sum(c.completion_tokens for c in choices)
    return {
        "id": f"cmpl-{next(counter)}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model_name,
        "choices": [{"index": i, "text": c.text, "logprobs": c.logprobs, "finish_reason": c.finish_reason}
                    for i, c in enumerate(choices)],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


_CHAT_NEUTRAL = {"n": 1, "presence_penalty": 0, "frequency_penalty": 0, "logit_bias": None,
                 "stream": False, "tools": None, "response_format": None}
_ROLES = ("system", "user", "assistant")


def _messages(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise RequestError(400, "messages must be a non-empty list of {role, content} objects")
    out = []
    for m in value:
        if not isinstance(m, dict) or m.get("role") not in _ROLES or not isinstance(m.get("content"), str):
            raise RequestError(400, f"each message needs a role among {', '.join(_ROLES)} and text content")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def handle_chat(engine: CompletionEngine, body: Any, limits: Limits, model_name: str,
                counter: itertools.count) -> dict[str, Any]:
    """A parsed ``/v1/chat/completions`` request body -> the response body."""
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object")
    if body.get("model") not in (None, model_name):
        raise RequestError(404, f"model {body.get('model')!r} is not served here; use {model_name!r}")
    for key, neutral in _CHAT_NEUTRAL.items():
        if body.get(key, neutral) not in (neutral, None):
            raise RequestError(400, f"{key}={body[key]!r} is not supported by this server")
    messages = _messages(body.get("messages"))
    max_tokens = _int(body, "max_tokens", None, 0, limits.max_tokens)
    if max_tokens is None:
        max_tokens = _int(body, "max_completion_tokens", 16, 0, limits.max_tokens)
    temperature = body.get("temperature", 1.0)
    top_p = body.get("top_p", 1.0)
    for key, value, low in (("temperature", temperature, 0.0), ("top_p", top_p, 1e-9)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= (2 if key == "temperature" else 1):
            raise RequestError(400, f"{key} must be a number in [{0 if key == 'temperature' else 0}, "
                                    f"{2 if key == 'temperature' else 1}]")
    seed = _int(body, "seed", 0, 0, 2**63 - 1)
    sampling = None if temperature == 0 else Sampling(float(temperature), float(top_p), int(seed or 0))
    want_logprobs = body.get("logprobs", False)
    if not isinstance(want_logprobs, bool):
        raise RequestError(400, "logprobs must be true or false")
    top = _int(body, "top_logprobs", 0, 0, limits.max_logprobs) or 0
    if top and not want_logprobs:
        raise RequestError(400, "top_logprobs needs logprobs: true")
    stop = body.get("stop") or []
    stop = [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop) or len(stop) > 16:
        raise RequestError(400, "stop must be a string or a list of at most 16 strings")
    choice = engine.complete(engine.chat_prompt(messages), max_tokens=int(max_tokens), stop=stop,
                             echo=False, logprobs=None, sampling=sampling)
    return {
        "id": f"chatcmpl-{next(counter)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model_name,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": choice.text},
                     "logprobs": engine.chat_logprobs(choice, top) if want_logprobs else None,
                     "finish_reason": choice.finish_reason}],
        "usage": {"prompt_tokens": choice.prompt_tokens, "completion_tokens": choice.completion_tokens,
                  "total_tokens": choice.prompt_tokens + choice.completion_tokens},
    }


class CompletionServer:
    """The engine behind a threaded HTTP server on loopback; a context manager that stops it."""

    def __init__(self, engine: CompletionEngine, *, model_name: str | None = None, port: int = 0,
                 api_key: str | None = None, limits: Limits = Limits()) -> None:
        self.engine = engine
        self.model_name = model_name or engine.path
        self.limits = limits
        self._api_key = api_key
        self._counter = itertools.count(1)
        self.requests_served = 0  # answered completion requests (tests read it)
        self._served_lock = threading.Lock()
        self._httpd = ThreadingHTTPServer((LOOPBACK, port), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/v1"

    def start(self) -> CompletionServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="distillbench-serve",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> CompletionServer:
        return self.start() if self._thread is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _authorized(self, header: str | None) -> bool:
        if not self._api_key:
            return True
        expected = f"Bearer {self._api_key}".encode()
        return hmac.compare_digest((header or "").encode(), expected)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            timeout = server.limits.socket_timeout_s
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
                pass  # the test output stays clean; errors go back to the client as JSON

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status: int, message: str) -> None:
                self.close_connection = True  # the body may be unread: never reuse this connection
                self._send(status, {"error": {"message": message, "type": "invalid_request_error",
                                              "code": status}})

            def do_GET(self) -> None:  # noqa: N802 - stdlib's name
                if self.path.rstrip("/") in ("/health", "/v1/health"):
                    self._send(200, {"status": "ok"})
                elif self.path.rstrip("/") == "/v1/models":
                    self._send(200, {"object": "list", "data": [
                        {"id": server.model_name, "object": "model", "owned_by": "distillbench"}]})
                else:
                    self._error(404, f"no route {self.path}")

            def do_POST(self) -> None:  # noqa: N802 - stdlib's name
                route = self.path.rstrip("/")
                handlers = {"/v1/completions": handle_completion, "/v1/chat/completions": handle_chat}
                if route not in handlers:
                    self._error(404, f"no route {self.path}; this server answers /v1/completions "
                                     "and /v1/chat/completions")
                    return
                if not server._authorized(self.headers.get("Authorization")):
                    self._error(401, "missing or wrong API key")
                    return
                try:
                    length = int(self.headers.get("Content-Length", ""))
                except ValueError:
                    self._error(411, "Content-Length is required")
                    return
                if not 0 < length <= server.limits.max_body_bytes:
                    self._error(413, f"request body must be 1..{server.limits.max_body_bytes} bytes")
                    return
                try:
                    body = json.loads(self.rfile.read(length))
                    reply = handlers[route](server.engine, body, server.limits, server.model_name,
                                            server._counter)
                except json.JSONDecodeError:
                    self._error(400, "the request body is not valid JSON")
                except RequestError as exc:
                    self._error(exc.status, str(exc))
                else:
                    with server._served_lock:
                        server.requests_served += 1
                    self._send(200, reply)

        return Handler


def serve(path: str, *, model_name: str | None = None, port: int = 0, api_key: str | None = None,
          dtype: str = "float32", device: str = "cpu", limits: Limits = Limits(),
          chat_template: str | None = None) -> CompletionServer:
    """Load ``path`` and start serving it; use as ``with serve(path) as server: server.base_url``.
    ``chat_template`` (a Jinja template's text) replaces the checkpoint's for chat requests."""
    engine = CompletionEngine(path, dtype=dtype, device=device, chat_template=chat_template)
    return CompletionServer(engine, model_name=model_name, port=port, api_key=api_key,
                            limits=limits).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_distillbench.serve",
                                     description="Serve a local checkpoint at /v1/completions on 127.0.0.1.")
    parser.add_argument("checkpoint", help="Hugging Face checkpoint directory")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--name", default=None, help="model name clients send (default: the path)")
    parser.add_argument("--api-key-env", default=None,
                        help="require 'Authorization: Bearer $VAR' with the key in this variable")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--chat-template", default=None,
                        help="a Jinja chat template file for /v1/chat/completions (default: the checkpoint's)")
    args = parser.parse_args(argv)
    key = os.environ.get(args.api_key_env) if args.api_key_env else None
    if args.api_key_env and not key:
        parser.error(f"environment variable {args.api_key_env} is not set")
    template = None
    if args.chat_template:
        from pathlib import Path

        template = Path(args.chat_template).read_text(encoding="utf-8")
    server = serve(args.checkpoint, model_name=args.name, port=args.port, api_key=key, dtype=args.dtype,
                   chat_template=template)
    print(f"serving {server.model_name} at {server.base_url}/completions and "
          f"{server.base_url}/chat/completions (Ctrl-C stops)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
