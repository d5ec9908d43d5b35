"""Per-item records: what every later concern (statistics, FLOPs, baselines, evidence) reads.

A ``TaskRun`` is one (model, task) evaluation; it holds one ``ItemRecord`` per document.
Both are frozen and round-trip through plain JSON (``to_dict`` / ``from_dict``) so the cache,
baselines and run files all store the same thing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from .spec.settings import Settings
    from .spec.suites import TaskSpec

RequestKind = Literal["loglikelihood", "loglikelihood_rolling", "generate_until", "multiple_choice"]


@dataclass(frozen=True)
class Request:
    """One call to the model on behalf of an item (a choice, a generation, a repeat)."""

    kind: str
    context_tokens: int
    output_tokens: int  # continuation tokens (log-likelihood) or generated tokens (generation)


@dataclass(frozen=True)
class ItemRecord:
    doc_id: int
    doc_hash: str
    prompt: str
    target: str
    response: str  # what was scored: filtered generation, or the chosen choice's text
    raw_response: str  # unfiltered generation ("" for log-likelihood tasks)
    score: float  # the task's primary metric for this item
    prompt_tokens: int
    output_tokens: int
    requests: tuple[Request, ...] = ()
    # multiple choice: log-likelihood of each choice and the index of the gold one
    choice_logprobs: tuple[float, ...] | None = None
    gold: int | None = None
    # filled by compute accounting (None when the architecture is unknown)
    flops: float | None = None
    # repeated sampling (a task with ``repeats: k``): every sample, as generated, as filtered and
    # as scored; ``score`` is then the mean of ``sample_scores`` (pass@1 averaged over k)
    samples: tuple[str, ...] | None = None
    sample_responses: tuple[str, ...] | None = None
    sample_scores: tuple[float, ...] | None = None
    majority_score: float | None = None  # the metric on the most frequent filtered answer (maj@k)
    # per sample, per generated token: [token, logprob, {token: logprob} of the top ones], where
    # a chat API returned them (a black-box teacher's distribution)
    token_logprobs: tuple[Any, ...] | None = None

    @property
    def correct(self) -> bool:
        return self.score >= 0.5

    def to_dict(self) -> dict[str, Any]:
        # shallow on purpose: asdict's recursive deep copy dominated writing a run file
        data = {f.name: getattr(self, f.name) for f in _ITEM_FIELDS
                if f.name not in _OPTIONAL_FIELDS or getattr(self, f.name) is not None}
        data["requests"] = [[r.kind, r.context_tokens, r.output_tokens] for r in self.requests]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ItemRecord:
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["requests"] = tuple(Request(str(k), int(c), int(o)) for k, c, o in data.get("requests", ()))
        if kwargs.get("choice_logprobs") is not None:
            kwargs["choice_logprobs"] = tuple(float(x) for x in kwargs["choice_logprobs"])
        for name, kind in (("samples", str), ("sample_responses", str), ("sample_scores", float)):
            if kwargs.get(name) is not None:
                kwargs[name] = tuple(kind(x) for x in kwargs[name])
        if kwargs.get("token_logprobs") is not None:
            kwargs["token_logprobs"] = tuple(kwargs["token_logprobs"])
        return cls(**kwargs)

    @property
    def repeats(self) -> int:
        return len(self.sample_scores) if self.sample_scores is not None else 1

    @property
    def samples_correct(self) -> int:
        """Samples scored right (>= 0.5); the single response's correctness without repeats."""
        if self.sample_scores is None:
            return int(self.correct)
        return sum(1 for s in self.sample_scores if s >= 0.5)


@dataclass(frozen=True)
class Cost:
    """What a (model, task) evaluation cost. ``None`` means unknown, never a guess."""

    requests: int
    prompt_tokens: int | None  # None: the backend had no tokenizer to count with
    output_tokens: int | None
    seconds: float
    flops: float | None = None
    prefill_flops: float | None = None
    decode_flops: float | None = None
    flops_per_second: float | None = None
    mfu: float | None = None
    dollars: float | None = None
    flops_source: str = "unknown"  # "analytic", "measured", "declared", "unknown"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cost:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class TaskRun:
    """One model evaluated on one task."""

    task: str  # qualified id: "<suite>/<task>"
    model: str  # the model's name in the session (teacher, student, ...)
    metric: str
    records: tuple[ItemRecord, ...]
    wall_seconds: float
    model_fingerprint: str
    task_fingerprint: str
    backend: str = "hf"
    cost: Cost | None = None
    from_cache: bool = False
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def n(self) -> int:
        return len(self.records)

    @property
    def score(self) -> float:
        return sum(r.score for r in self.records) / len(self.records) if self.records else float("nan")

    @property
    def successes(self) -> int:
        return sum(1 for r in self.records if r.correct)

    @property
    def repeats(self) -> int:
        """Samples per item (1 unless the task declares ``repeats``)."""
        return max((r.repeats for r in self.records), default=1)

    def outcomes(self) -> dict[str, float]:
        """Per-item scores keyed by doc hash: the unit paired statistics work on."""
        return {r.doc_hash: r.score for r in self.records}

    def with_cost(self, cost: Cost, records: tuple[ItemRecord, ...] | None = None) -> TaskRun:
        return replace(self, cost=cost, records=self.records if records is None else records)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "model": self.model,
            "metric": self.metric,
            "wall_seconds": self.wall_seconds,
            "model_fingerprint": self.model_fingerprint,
            "task_fingerprint": self.task_fingerprint,
            "backend": self.backend,
            "cost": None if self.cost is None else self.cost.to_dict(),
            "meta": self.meta,
            "records": [r.to_dict() for r in self.records],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, from_cache: bool = False) -> TaskRun:
        return cls(
            task=data["task"],
            model=data["model"],
            metric=data["metric"],
            records=tuple(ItemRecord.from_dict(r) for r in data["records"]),
            wall_seconds=float(data["wall_seconds"]),
            model_fingerprint=data["model_fingerprint"],
            task_fingerprint=data["task_fingerprint"],
            backend=data.get("backend", "hf"),
            cost=None if data.get("cost") is None else Cost.from_dict(data["cost"]),
            from_cache=from_cache,
            meta=dict(data.get("meta", {})),
        )


_ITEM_FIELDS = fields(ItemRecord)
# written only when set, so records of runs without repeats or logprobs read as they always did
_OPTIONAL_FIELDS = frozenset({"samples", "sample_responses", "sample_scores", "majority_score",
                              "token_logprobs"})


@dataclass(frozen=True)
class Unavailable:
    """A pair that cannot be evaluated here (no data offline, backend missing): items skip."""

    reason: str


Outcome = TaskRun | Unavailable


@dataclass
class ItemFigures:
    """What one test item measured, for the report, the run file and JUnit properties (filled
    in as the item runs, so not frozen)."""

    task: str
    model: str
    kind: str
    outcome: str = "pending"
    message: str = ""
    figures: dict[str, Any] = field(default_factory=dict)


class SessionView(Protocol):
    """What the reports and run files read of a finished session (the pytest face's
    ``DistillbenchSession`` is one): settings, tasks, item figures, runs, warnings, and what
    the session-wide verdicts left in ``extra`` (``"evidence"``: the evidence result;
    ``"run_sections"``: JSON-ready data for the run file)."""

    settings: Settings
    tasks: dict[str, TaskSpec]
    items: dict[str, ItemFigures]
    warnings: list[str]
    extra: dict[str, Any]

    def runs(self) -> Mapping[tuple[str, str], TaskRun]: ...
