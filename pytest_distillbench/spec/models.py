"""Models in a session: roles, where they live, and a fingerprint of what they are."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DistillbenchError

ROLES = ("teacher", "student", "control")
# The embedded checkpoints (``zoo:<name>`` paths) ship in the package's ``zoo/`` folder; the
# code that trains them lives there too, but finding them is a matter of declaring models.
ZOO_DIR = Path(__file__).resolve().parents[1] / "zoo"
# The embedded reference population (trained by ``zoo.build``, each from its own seeds).
ZOO_CONTROLS = tuple(f"control-{i:02d}" for i in range(1, 9))
BACKENDS = ("hf", "vllm", "api", "api-chat")

# Files that decide what a checkpoint computes. The model card (README.md) is left out
# because it records the fingerprint itself.
_FINGERPRINT_PATTERNS = (
    "config.json",
    "generation_config.json",
    "*.safetensors",
    "*.bin",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "chat_template.jinja",
)


@dataclass(frozen=True)
class ModelSpec:
    """One model of the session, as declared in settings or on the command line."""

    name: str
    role: str
    path: str  # local checkpoint directory, hub id (cached), or served model name
    backend: str = "hf"
    dtype: str = "float32"
    device: str = "auto"
    batch_size: int = 32
    teacher: str | None = None  # students: the teacher they were distilled from
    expect_distilled: bool | None = None  # evidence items assert this when set
    # false (controls only): a reference of the distillation evidence and nothing else: no
    # score, retention, compute or baseline items, and evaluated only where the evidence reads
    # it (not on a task whose teacher is right, or wrong, on every item)
    scored: bool = True
    think_delimiter: str | None = None  # reasoning models: score the text after it
    params: float | None = None  # declared matmul parameters (unknown architectures)
    active_params: float | None = None
    price_in_per_1k: float | None = None
    price_out_per_1k: float | None = None
    options: tuple[tuple[str, str], ...] = field(default=())  # backend-specific extras
    # chat models: true applies the checkpoint's own chat template (lm-eval's
    # apply_chat_template), a path names a Jinja template file to use instead; a suite task may
    # override all three
    chat_template: bool | str | None = None
    system_prompt: str | None = None  # lm-eval's system_instruction
    fewshot_as_multiturn: bool | None = None  # few-shot examples as turns (chat template only)

    def option(self, key: str, default: str | None = None) -> str | None:
        return dict(self.options).get(key, default)

    @property
    def is_local(self) -> bool:
        return Path(self.path).is_dir()


def checkpoint_files(directory: Path) -> list[Path]:
    found: set[Path] = set()
    for pattern in _FINGERPRINT_PATTERNS:
        found.update(p for p in directory.glob(pattern) if p.is_file())
    return sorted(found)


def fingerprint(path: str | Path) -> str:
    """sha256 over the weights, config and tokenizer files of a checkpoint directory.

    Names are hashed with contents so a renamed shard changes the fingerprint.
    """
    directory = Path(path)
    if not directory.is_dir():
        raise DistillbenchError(
            "model directory does not exist", path=directory,
            fix="point the model's path at a Hugging Face checkpoint directory "
                "(config.json, weights, tokenizer files)",
        )
    files = checkpoint_files(directory)
    if not any(f.name == "config.json" for f in files):
        raise DistillbenchError(
            "no config.json: this is not a Hugging Face checkpoint directory", path=directory,
            fix="save the model with save_pretrained() or point at the right directory",
        )
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode())
        digest.update(b"\0")
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def zoo_checkpoint(name: str) -> Path:
    """The folder of the embedded checkpoint ``name`` (``zoo:<name>`` in a model's path)."""
    return ZOO_DIR / name
