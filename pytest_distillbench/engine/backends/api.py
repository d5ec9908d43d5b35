"""OpenAI-compatible completions endpoints (vLLM, TGI, llama.cpp, hosted APIs) through lm-eval's
``local-completions`` model.

The model's ``path`` is the name the server knows it by; ``options`` carry the rest::

    [tool.distillbench.models.teacher]
    role = "teacher"
    backend = "api"
    path = "my-teacher"                      # sent as "model" in each request
    options = {base_url = "http://127.0.0.1:8000/v1", tokenizer = "models/teacher",
               num_concurrent = "4", max_retries = "3", api_key_env = "TEACHER_KEY"}

The API key is read from the environment at build time (``api_key_env``, default
``OPENAI_API_KEY``) and lives only in the request header of the loaded model object, never in the
``ModelSpec`` that run files store. Token counts come from the configured tokenizer; without one
they are unknown (and log-likelihood tasks, which need token boundaries, cannot run).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from ...errors import DistillbenchError
from ...spec.models import ModelSpec

DEFAULT_KEY_ENV = "OPENAI_API_KEY"
TOKENIZER_BACKENDS = ("huggingface", "tiktoken", "remote", "none")
_OPTIONS = {"base_url", "tokenizer", "tokenizer_backend", "num_concurrent", "max_retries",
            "timeout", "api_key_env", "config", "max_length", "max_gen_toks", "tokenized_requests",
            "batch_size", "verify_certificate"}


def available() -> str | None:
    missing = [m for m in ("aiohttp", "tenacity", "requests") if find_spec(m) is None]
    if missing:
        return f"{', '.join(missing)} not installed (pip install 'lm-eval[api]')"
    return None


def resolve_device(device: str) -> str:
    return "remote"  # the server decides; no local device peak applies


def completions_url(base_url: str) -> str:
    """lm-eval posts to the URL as given; accept the usual ``.../v1`` form too."""
    url = base_url.rstrip("/")
    return url if url.endswith("/completions") else f"{url}/completions"


def _key(spec: ModelSpec, name: str) -> str:
    return f"models.{spec.name}.options.{name}"


def _int_option(spec: ModelSpec, name: str, default: int, low: int = 1) -> int:
    raw = spec.option(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if value < low:
        raise DistillbenchError(f"{name} must be an integer >= {low}, got {raw!r}",
                                key=_key(spec, name), fix=f"write {name} = \"{max(default, low)}\"")
    return value


def _bool_option(spec: ModelSpec, name: str, default: bool) -> bool:
    raw = spec.option(name)
    if raw is None:
        return default
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise DistillbenchError(f"{name} must be true or false, got {raw!r}", key=_key(spec, name),
                            fix=f"write {name} = \"true\" or \"false\"")


def local_path(value: str, root: Path | None = None) -> Path | None:
    """A path option as an existing local path (relative ones are read from the project root
    first, as the rest of the settings are), or None when it names nothing on this machine."""
    if value.startswith("zoo:"):
        from ...spec.models import zoo_checkpoint as checkpoint

        return checkpoint(value[4:])
    path = Path(value).expanduser()
    if not path.is_absolute() and root is not None and (root / path).exists():
        path = root / path
    return path.resolve() if path.exists() else None


def api_key(spec: ModelSpec) -> str | None:
    """The key from the environment variable the options name (default OPENAI_API_KEY).

    A variable named explicitly must be set; the default one may be absent (local servers
    usually need no key).
    """
    named = spec.option("api_key_env")
    value = os.environ.get(named or DEFAULT_KEY_ENV) or None
    if named and value is None:
        raise DistillbenchError(f"environment variable {named} is not set", key=_key(spec, "api_key_env"),
                                fix=f"export {named}=<your key> before running pytest")
    return value


def checked_base_url(spec: ModelSpec, allowed: set[str]) -> str:
    """The served model's ``options.base_url``, after refusing options the backend does not
    take (shared by the ``api`` and ``api-chat`` backends)."""
    unknown = sorted({k for k, _ in spec.options} - allowed)
    if unknown:
        raise DistillbenchError(f"unknown option {unknown[0]!r} for the {spec.backend} backend",
                                key=_key(spec, unknown[0]), fix=f"use only: {', '.join(sorted(allowed))}")
    base_url = spec.option("base_url")
    if not base_url:
        raise DistillbenchError(f"the {spec.backend} backend needs options.base_url",
                                key=_key(spec, "base_url"),
                                fix='add options = {base_url = "http://127.0.0.1:8000/v1"}')
    return base_url


def model_args(spec: ModelSpec, root: Path | None = None) -> dict[str, Any]:
    """``ModelSpec`` -> keyword arguments of lm-eval's ``LocalCompletionsAPI`` (without the key)."""
    base_url = checked_base_url(spec, _OPTIONS)
    tokenizer = spec.option("tokenizer")
    backend = spec.option("tokenizer_backend") or ("huggingface" if tokenizer else "none")
    if backend not in TOKENIZER_BACKENDS:
        raise DistillbenchError(f"unknown tokenizer_backend {backend!r}", key=_key(spec, "tokenizer_backend"),
                                fix=f"use one of: {', '.join(TOKENIZER_BACKENDS)}")
    args: dict[str, Any] = dict(
        model=spec.path,
        base_url=completions_url(base_url),
        tokenizer_backend=backend,
        tokenized_requests=_bool_option(spec, "tokenized_requests", backend != "none"),
        num_concurrent=_int_option(spec, "num_concurrent", 1),
        max_retries=_int_option(spec, "max_retries", 3),
        timeout=_int_option(spec, "timeout", 300),
        batch_size=_int_option(spec, "batch_size", int(spec.batch_size)),
        seed=1234,
        verify_certificate=_bool_option(spec, "verify_certificate", True),
    )
    if tokenizer and backend == "huggingface":
        local = local_path(tokenizer, root)
        args["tokenizer"] = str(local) if local else tokenizer  # else a cached hub id
    if spec.option("max_gen_toks"):
        args["max_gen_toks"] = _int_option(spec, "max_gen_toks", 256)
    max_length = _int_option(spec, "max_length", 0, low=2) if spec.option("max_length") else None
    if max_length is None:
        config = local_config(spec, root)
        positions = None if config is None else (config.get("n_positions")
                                                 or config.get("max_position_embeddings"))
        max_length = int(positions) if positions else None
    if max_length is not None:
        args["max_length"] = max_length  # else lm-eval's default (2048)
    return args


def build(spec: ModelSpec, settings: Any = None) -> Any:
    from lm_eval.models.openai_completions import LocalCompletionsAPI

    root = getattr(settings, "rootdir", None)
    args = {**model_args(spec, root), "seed": getattr(settings, "seed", 1234)}
    key = api_key(spec)
    # A header of our own, so the key never comes from lm-eval's fixed OPENAI_API_KEY lookup.
    header = {"Authorization": f"Bearer {key}"} if key else {"Content-Type": "application/json"}
    try:
        lm = LocalCompletionsAPI(header=header, **args)
    except (OSError, ValueError, ImportError) as exc:  # ImportError: tiktoken not installed
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DistillbenchError(
            f"model {spec.name!r}: cannot set up the api backend ({first})", key=_key(spec, "tokenizer"),
            fix="point tokenizer at a tokenizer directory on this machine (or a cached hub id), "
                "or leave it out to run generation tasks without token counts",
        ) from None
    lm.distillbench_config = local_config(spec, root)  # read here: model_config() only gets the LM
    return lm


def token_counter(lm: Any) -> Callable[[str], int] | None:
    """Counts with the configured tokenizer; None (unknown) when the endpoint's is not known."""
    if getattr(lm, "tokenizer_backend", None) is None or getattr(lm, "tokenizer", None) is None:
        return None
    return lambda text: len(lm.tok_encode(text))


def local_config(spec: ModelSpec, root: Path | None = None) -> dict[str, Any] | None:
    """The served model's config.json when one is on this machine: ``options.config`` (a file
    or a checkpoint directory), else the model path or the tokenizer path if they are local
    checkpoint directories. None leaves the FLOPs unknown unless ``params`` are declared."""
    explicit = spec.option("config")
    candidates = [explicit] if explicit else [spec.path, spec.option("tokenizer")]
    for candidate in filter(None, candidates):
        path = local_path(candidate, root)
        path = path / "config.json" if path is not None and path.is_dir() else path
        if path is not None and path.is_file():
            try:
                return json.loads(path.read_text(encoding="utf-8"))
            except ValueError:
                raise DistillbenchError("not valid JSON", path=path, key=_key(spec, "config"),
                                        fix="point config at the model's config.json") from None
        if explicit:
            raise DistillbenchError(f"no config.json at {candidate}", key=_key(spec, "config"),
                                    fix="point config at the served model's config.json or its "
                                        "checkpoint directory")
    return None


def model_config(lm: Any) -> dict[str, Any] | None:
    return getattr(lm, "distillbench_config", None)
