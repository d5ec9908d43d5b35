"""Chat-only OpenAI-compatible endpoints (hosted models, ``vllm serve``, ``python -m
pytest_distillbench.serve``) through lm-eval's ``local-chat-completions`` model.

Hosted teachers no longer serve ``/v1/completions``; at ``/v1/chat/completions`` the server
applies the model's chat template, so this backend always runs lm-eval with
``apply_chat_template`` (the messages go out as JSON) and only generation tasks run on it: a
chat endpoint returns no log-likelihoods, and log-likelihood tasks are skipped with that reason.

    [tool.distillbench.models.teacher]
    role = "teacher"
    backend = "api-chat"
    path = "big-teacher"                     # sent as "model" in each request
    params = 70e9                            # or price_in_per_1k / price_out_per_1k
    options = {base_url = "http://127.0.0.1:8000/v1", top_logprobs = 5, num_concurrent = 4}

The key is handled as by the ``api`` backend: read from ``$OPENAI_API_KEY`` (or the variable
``api_key_env`` names) at build time, kept only in the loaded model's request header. Token
counts are the server's own (``usage`` of each response); with ``top_logprobs`` set the
server's top log-probabilities of every generated token are kept in the per-item records (a
black-box teacher's distribution). A task's ``repeats`` are sent with seeds ``seed``,
``seed + 1``, ... so k samples of one prompt differ and a re-run draws the same ones.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...errors import DistillbenchError
from ...spec.models import ModelSpec
from .api import _bool_option, _int_option, _key, api_key, available, checked_base_url, local_config  # noqa: F401

LOGLIKELIHOOD = False  # the evaluator skips log-likelihood tasks on this backend
_OPTIONS = {"base_url", "num_concurrent", "max_retries", "timeout", "api_key_env", "config",
            "max_gen_toks", "top_logprobs", "verify_certificate"}
MAX_TOP_LOGPROBS = 20  # OpenAI's limit

_prompt: contextvars.ContextVar[str | None] = contextvars.ContextVar("distillbench_chat_prompt",
                                                                     default=None)


def resolve_device(device: str) -> str:
    return "remote"


def chat_url(base_url: str) -> str:
    """lm-eval posts to the URL as given; accept the usual ``.../v1`` form too."""
    url = base_url.rstrip("/")
    return url if url.endswith("/chat/completions") else f"{url}/chat/completions"


def model_args(spec: ModelSpec) -> dict[str, Any]:
    """``ModelSpec`` -> keyword arguments of lm-eval's ``LocalChatCompletion`` (without the key)."""
    base_url = checked_base_url(spec, _OPTIONS)
    args: dict[str, Any] = dict(
        model=spec.path, base_url=chat_url(base_url), tokenizer_backend=None, tokenized_requests=False,
        num_concurrent=_int_option(spec, "num_concurrent", 1), max_retries=_int_option(spec, "max_retries", 3),
        timeout=_int_option(spec, "timeout", 300), batch_size=1, seed=1234,
        verify_certificate=_bool_option(spec, "verify_certificate", True),
    )
    if spec.option("max_gen_toks"):
        args["max_gen_toks"] = _int_option(spec, "max_gen_toks", 256)
    return args


def top_logprobs(spec: ModelSpec) -> int:
    value = _int_option(spec, "top_logprobs", 0, low=0)
    if value > MAX_TOP_LOGPROBS:
        raise DistillbenchError(f"top_logprobs must be at most {MAX_TOP_LOGPROBS}, got {value}",
                                key=_key(spec, "top_logprobs"), fix=f"write top_logprobs = {MAX_TOP_LOGPROBS}")
    return value


def _chat_class() -> type:
    from lm_eval.models.openai_completions import LocalChatCompletion

    class DistillbenchChat(LocalChatCompletion):
        """lm-eval's chat model, keeping what the server says besides the text: token counts
        (``usage``), top log-probabilities, and one seed per repeat of a prompt."""

        def distillbench_start_task(self, seed: int) -> None:
            self._seed = seed
            self.distillbench_sent: dict[str, int] = {}  # prompt -> requests made for it
            self.distillbench_logprobs: dict[str, list[tuple[str, Any]]] = {}

        def _create_payload(self, messages: Any, generate: bool = False, gen_kwargs: dict | None = None,
                            seed: int = 1234, eos: Any = None, **kwargs: Any) -> dict:
            payload = super()._create_payload(messages, generate=generate, gen_kwargs=gen_kwargs,
                                              seed=seed, eos=eos, **kwargs)
            prompt = _prompt.get()
            if prompt is not None:
                sent = getattr(self, "distillbench_sent", {})
                nth = sent.get(prompt, 0)
                sent[prompt] = nth + 1
                payload["seed"] = int(seed) + nth  # repeats of one prompt: seed, seed + 1, ...
            if self.distillbench_top_logprobs:
                payload.update(logprobs=True, top_logprobs=self.distillbench_top_logprobs)
            return payload

        def model_call(self, messages: Any, **kwargs: Any) -> Any:
            token = _prompt.set(_key_of(messages))
            try:
                return super().model_call(messages, **kwargs)
            finally:
                _prompt.reset(token)

        async def amodel_call(self, session: Any, sem: Any, messages: Any, **kwargs: Any) -> Any:
            token = _prompt.set(_key_of(messages))
            try:
                return await super().amodel_call(session, sem, messages, **kwargs)
            finally:
                _prompt.reset(token)

        def parse_generations(self, outputs: Any, **kwargs: Any) -> list[str]:
            texts = super().parse_generations(outputs=outputs, **kwargs)
            # the async path parses inside amodel_call; the sync one after model_call, with contexts
            prompt = _prompt.get() or _key_of(kwargs.get("contexts"))
            replies = outputs if isinstance(outputs, list) else [outputs]
            for reply in replies:
                usage = (reply or {}).get("usage") or {}
                choices = sorted((reply or {}).get("choices") or [], key=lambda c: c.get("index", 0))
                for choice in choices:
                    text = ((choice.get("message") or {}).get("content"))
                    if text is None:
                        continue
                    if prompt is not None and usage.get("prompt_tokens") is not None:
                        self.distillbench_usage[prompt] = int(usage["prompt_tokens"])
                    if usage.get("completion_tokens") is not None and len(choices) == 1:
                        self.distillbench_usage[text] = int(usage["completion_tokens"])
                    tokens = _token_logprobs(choice.get("logprobs"))
                    if prompt is not None and tokens is not None:
                        self.distillbench_logprobs.setdefault(prompt, []).append((text, tokens))
            return texts

    return DistillbenchChat


def _key_of(messages: Any) -> str | None:
    first = messages[0] if isinstance(messages, (list, tuple)) and messages else messages
    prompt = getattr(first, "prompt", None)
    return prompt if isinstance(prompt, str) else None


def _token_logprobs(logprobs: Any) -> list[list[Any]] | None:
    """OpenAI chat ``logprobs`` -> ``[[token, logprob, {token: logprob, ...}], ...]``."""
    content = (logprobs or {}).get("content") if isinstance(logprobs, dict) else None
    if not content:
        return None
    return [[t.get("token"), t.get("logprob"),
             {alt.get("token"): alt.get("logprob") for alt in t.get("top_logprobs") or []}]
            for t in content]


def build(spec: ModelSpec, settings: Any = None) -> Any:
    root: Path | None = getattr(settings, "rootdir", None)
    args = {**model_args(spec), "seed": getattr(settings, "seed", 1234)}
    k = top_logprobs(spec)
    key = api_key(spec)
    header = {"Authorization": f"Bearer {key}"} if key else {"Content-Type": "application/json"}
    lm = _chat_class()(header=header, **args)
    lm.distillbench_top_logprobs = k
    lm.distillbench_usage = {}
    lm.distillbench_start_task(args["seed"])
    lm.distillbench_config = local_config(spec, root)
    return lm


def token_counter(lm: Any) -> Callable[[str], int] | None:
    """The server's own counts: prompt tokens of each request's messages (after its chat
    template) and completion tokens of each generated text."""
    usage = lm.distillbench_usage

    def count(text: str) -> int:
        if text not in usage:
            raise DistillbenchError(f"the chat server reported no token usage for {text[:60]!r}",
                                    key="usage", fix="use a server that returns usage, or leave "
                                    "params/prices out (cost then stays unknown)")
        return usage[text]

    return count


def model_config(lm: Any) -> dict[str, Any] | None:
    return getattr(lm, "distillbench_config", None)
