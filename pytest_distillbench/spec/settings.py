"""Command line + ``[tool.distillbench]`` of pyproject.toml -> one frozen ``Settings``.

Models are declared as ``[tool.distillbench.models.<name>]`` tables with a ``role``; the command
line overrides them per role (``--distillbench-teacher``, ``--distillbench-student NAME=PATH``,
``--distillbench-control NAME=PATH``). With no models declared anywhere the embedded zoo models
are used. A path ``zoo:<name>`` names an embedded checkpoint.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import DistillbenchError
from .models import BACKENDS, ROLES, ModelSpec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_MODEL_KEYS = {f.name for f in fields(ModelSpec)} - {"name", "options"} | {"options"}
_TOP_KEYS = {
    "models", "baselines", "cache_dir", "min_effect", "alpha", "max_flops_increase", "verdict",
    "evidence_method",
    "seed", "batch_size", "device", "offline", "flops", "report", "markdown", "json", "csv",
}
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# verdicts.METHODS and verdicts.DEFAULT_METHOD, kept here so reading settings imports no numpy
VERDICT_METHODS = ("auto", "mcnemar", "margin", "margin-split")
DEFAULT_VERDICT = "auto"


@dataclass(frozen=True)
class Settings:
    rootdir: Path
    models: tuple[ModelSpec, ...]
    cache_dir: Path
    baselines_dir: Path
    use_cache: bool = True
    update_baselines: bool = False
    min_effect: float = 0.01
    alpha: float = 0.05
    max_flops_increase: float = 0.10
    verdict: str = DEFAULT_VERDICT
    # the distillation verdict's population test: "auto" (exact rank test from 19 controls,
    # Crawford-Howell t below), or either one forced (measures.population)
    evidence_method: str = "auto"
    seed: int = 1234
    limit: int | None = None
    offline: bool = True
    flops_mode: str = "analytic"
    json_path: Path | None = None
    csv_path: Path | None = None
    report_dir: Path | None = None
    markdown_path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def model(self, name: str) -> ModelSpec:
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(name)

    @property
    def teacher(self) -> ModelSpec | None:
        return next((m for m in self.models if m.role == "teacher"), None)

    def by_role(self, role: str) -> tuple[ModelSpec, ...]:
        return tuple(m for m in self.models if m.role == role)

    def teacher_of(self, model: ModelSpec) -> ModelSpec | None:
        if model.role == "teacher":
            return None
        if model.teacher:
            return self.model(model.teacher)
        return self.teacher


def read_pyproject(rootdir: Path) -> tuple[dict[str, Any], Path | None]:
    path = rootdir / "pyproject.toml"
    if not path.is_file():
        return {}, None
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise DistillbenchError(f"not valid TOML ({exc})", path=path, fix="fix the TOML syntax") from None
    section = data.get("tool", {}).get("distillbench", {})
    if not isinstance(section, dict):
        raise DistillbenchError("must be a table", path=path, key="[tool.distillbench]",
                                fix="write [tool.distillbench] as a table")
    return section, path


def _resolve_path(value: str, rootdir: Path) -> str:
    if value.startswith("zoo:"):
        from .models import zoo_checkpoint as checkpoint

        return str(checkpoint(value[4:]))
    p = Path(value).expanduser()
    if p.is_absolute():
        return str(p)
    local = rootdir / p
    # Relative paths that exist are local checkpoints; anything else may be a hub id / served name.
    return str(local.resolve()) if local.exists() or value.startswith(".") else value


def _model_from_table(name: str, table: Any, rootdir: Path, where: Path | None,
                      defaults: dict[str, Any]) -> ModelSpec:
    key = f"[tool.distillbench.models.{name}]"
    if not isinstance(table, dict):
        raise DistillbenchError("must be a table", path=where, key=key,
                                fix='write role = "...", path = "..."')
    bad = sorted(set(table) - _MODEL_KEYS)
    if bad:
        raise DistillbenchError(f"unknown key {bad[0]!r}", path=where, key=key,
                                fix=f"use only: {', '.join(sorted(_MODEL_KEYS))}")
    from . import schema

    role = table.get("role")
    if role not in ROLES:
        raise DistillbenchError(f"role must be one of {', '.join(ROLES)}", path=where, key=f"{key}.role",
                                fix='add role = "teacher", "student" or "control"')
    if not isinstance(table.get("path"), str):
        raise DistillbenchError("missing path", path=where, key=f"{key}.path",
                                fix="give the checkpoint directory, e.g. path = \"models/student\"")
    backend = table.get("backend", "hf")
    if backend not in BACKENDS:
        raise DistillbenchError(f"unknown backend {backend!r}", path=where, key=f"{key}.backend",
                                fix=f"use one of: {', '.join(BACKENDS)}")
    schema.validate(schema.ModelTable, table, path=where, prefix=key)
    values = {**defaults, **{k: v for k, v in table.items() if k != "options"}}
    values["path"] = _resolve_path(table["path"], rootdir) if backend == "hf" else table["path"]
    chat = table.get("chat_template")
    if chat is not None and not isinstance(chat, (bool, str)):
        raise DistillbenchError("chat_template must be true, false or the path of a Jinja template",
                                path=where, key=f"{key}.chat_template",
                                fix='write chat_template = true (the checkpoint\'s own template) or '
                                    'chat_template = "templates/chat.jinja"')
    if isinstance(chat, str):
        values["chat_template"] = _resolve_path(chat, rootdir)
    for field_name, kind, example in (("system_prompt", str, '"You are a careful solver."'),
                                      ("fewshot_as_multiturn", bool, "true")):
        if table.get(field_name) is not None and not isinstance(table[field_name], kind):
            raise DistillbenchError(f"{field_name} must be a {kind.__name__}", path=where,
                                    key=f"{key}.{field_name}", fix=f"write {field_name} = {example}")
    options = tuple(sorted((str(k), str(v)) for k, v in (table.get("options") or {}).items()))
    return ModelSpec(name=name, options=options, **values)


def _parse_named(values: list[str], flag: str) -> list[tuple[str, str]]:
    out = []
    for v in values:
        name, sep, path = v.partition("=")
        if not sep or not name or not path:
            raise DistillbenchError(f"{flag} {v!r} must be NAME=PATH", key=flag,
                                    fix=f"write e.g. {flag} small=models/small")
        out.append((name, path))
    return out


def default_models() -> tuple[ModelSpec, ...]:
    from .models import ZOO_CONTROLS
    from .models import zoo_checkpoint as checkpoint

    # The controls form the reference population of the evidence (each with its own initial
    # weights and batch order) and each is itself checked against the others, leave-one-out:
    # none of them saw the teacher, so each is expected not to be flagged. They are references
    # only (scored = false): eight more score tables would say little, and evaluating them only
    # where the evidence reads them keeps the main job's cold time within 2x of the two-control
    # one (benchmarks/references.py).
    return (
        ModelSpec(name="teacher", role="teacher", path=str(checkpoint("teacher"))),
        ModelSpec(name="student", role="student", path=str(checkpoint("student")),
                  teacher="teacher", expect_distilled=True),
        *(ModelSpec(name=name, role="control", path=str(checkpoint(name)), teacher="teacher",
                    expect_distilled=False, scored=False) for name in ZOO_CONTROLS),
    )


def build_settings(option: Any, rootdir: Path) -> Settings:
    """``option`` is pytest's ``config.option`` namespace (or anything with those attributes)."""
    from . import schema

    section, where = read_pyproject(rootdir)
    bad = sorted(set(section) - _TOP_KEYS)
    if bad:
        raise DistillbenchError(f"unknown key {bad[0]!r}", path=where, key="[tool.distillbench]",
                                fix=f"use only: {', '.join(sorted(_TOP_KEYS))}")
    # types and ranges of every key, from the declared schema, before anything else is read;
    # the model tables are checked one by one below, under their own names
    schema.validate(schema.ProjectSettings, {k: v for k, v in section.items() if k != "models"},
                    path=where, prefix="[tool.distillbench]")
    models_table = section.get("models") or {}
    if not isinstance(models_table, dict):
        raise DistillbenchError("must be a table of model tables", path=where,
                                key="[tool.distillbench.models]",
                                fix="write one [tool.distillbench.models.<name>] table per model")
    cli = {k: getattr(option, f"distillbench_{k}", None) for k in schema.OPTIONS}
    schema.validate(schema.CommandLine, cli, path=None, keys=schema.OPTIONS)

    defaults: dict[str, Any] = {}
    if "batch_size" in section:
        defaults["batch_size"] = int(section["batch_size"])
    if "device" in section:
        defaults["device"] = str(section["device"])
    if cli["device"] is not None:
        defaults["device"] = cli["device"]
    if cli["batch_size"] is not None:
        defaults["batch_size"] = int(cli["batch_size"])

    declared = [_model_from_table(n, t, rootdir, where, defaults) for n, t in models_table.items()]
    # where each model was declared, so that a problem with it names that place
    origins: dict[str, tuple[Path | None, str]] = {
        m.name: (where, f"[tool.distillbench.models.{m.name}]") for m in declared}
    cli_teacher = cli["teacher"]
    cli_students = _parse_named(getattr(option, "distillbench_student", None) or [], "--distillbench-student")
    cli_controls = _parse_named(getattr(option, "distillbench_control", None) or [], "--distillbench-control")

    if not declared:
        # Decision: the embedded models stand in for a pyproject.toml that declares none, and the
        # command line replaces them role by role exactly as it replaces declared models. So
        # `--distillbench-student mine=PATH` alone evaluates the student against the embedded
        # teacher and controls (evidence keeps its references), and `--distillbench-teacher`
        # alone swaps only the teacher. Replacing every default whenever any model was given
        # left no teacher ("exactly one teacher is needed") or no controls (no evidence).
        declared = [ModelSpec(**{**m.__dict__, **defaults}) for m in default_models()]
        origins = {m.name: (None, f"embedded model {m.name!r}") for m in declared}
    models = list(declared)
    teacher_name = next((m.name for m in models if m.role == "teacher"), "teacher")
    if cli_teacher:
        if origins.get(teacher_name, (None, ""))[1].startswith("embedded"):
            # the embedded student was distilled from the embedded teacher: against another
            # teacher that claim is not known to hold, so its evidence item is not asserted
            models = [ModelSpec(**{**m.__dict__, "expect_distilled": None}) for m in models]
        models = [m for m in models if m.role != "teacher"]
        models.insert(0, ModelSpec(name=teacher_name, role="teacher",
                                   path=_resolve_path(cli_teacher, rootdir), **defaults))
        origins[teacher_name] = (None, "--distillbench-teacher")
    for role, given, flag in (("student", cli_students, "--distillbench-student"),
                              ("control", cli_controls, "--distillbench-control")):
        if given:
            models = [m for m in models if m.role != role]
            models += [ModelSpec(name=n, role=role, path=_resolve_path(p, rootdir),
                                 teacher=teacher_name,
                                 expect_distilled=True if role == "student" else None, **defaults)
                       for n, p in given]
            for n, p in given:
                origins[n] = (None, f"{flag} {n}={p}")
    _validate_models(models, where, origins)

    verdict = getattr(option, "distillbench_verdict", None) or section.get("verdict", DEFAULT_VERDICT)
    if verdict not in VERDICT_METHODS:
        raise DistillbenchError(f"unknown verdict method {verdict!r}", path=where, key="verdict",
                                fix=f"use one of: {', '.join(VERDICT_METHODS)}")

    def path_opt(name: str, key: str) -> Path | None:
        value = getattr(option, name, None) or section.get(key)
        if not value:
            return None
        resolved = (rootdir / value).resolve()
        flag = "--" + name.replace("_", "-")
        given_on_cli = bool(getattr(option, name, None))
        _check_writable(resolved, folder=key == "report", path=None if given_on_cli else where,
                        key=flag if given_on_cli else f"[tool.distillbench].{key}")
        return resolved

    baselines_cli = cli["baselines"]
    baselines_dir = (rootdir / (baselines_cli or section.get("baselines", "baselines"))).resolve()
    if baselines_dir.exists() and not baselines_dir.is_dir():
        raise DistillbenchError(f"{baselines_dir} is a file, not a folder of baselines",
                                path=None if baselines_cli else where,
                                key="--distillbench-baselines" if baselines_cli else "[tool.distillbench].baselines",
                                fix="point it at a folder (it is created by --distillbench-update-baselines)")
    cache_dir = (rootdir / section.get("cache_dir", ".distillbench")).resolve()
    _check_writable(cache_dir, folder=True, path=where, key="[tool.distillbench].cache_dir")

    return Settings(
        rootdir=rootdir,
        models=tuple(models),
        cache_dir=cache_dir,
        baselines_dir=baselines_dir,
        use_cache=not getattr(option, "distillbench_no_cache", False),
        update_baselines=bool(getattr(option, "distillbench_update_baselines", False)),
        min_effect=float(section.get("min_effect", 0.01)),
        alpha=float(section.get("alpha", 0.05)),
        max_flops_increase=float(section.get("max_flops_increase", 0.10)),
        verdict=verdict,
        evidence_method=str(section.get("evidence_method", "auto")),
        seed=int(section.get("seed", 1234)),
        limit=cli["limit"],
        offline=not getattr(option, "distillbench_online", False) and bool(section.get("offline", True)),
        flops_mode=getattr(option, "distillbench_flops", None) or section.get("flops", "analytic"),
        json_path=path_opt("distillbench_json", "json"),
        csv_path=path_opt("distillbench_csv", "csv"),
        report_dir=path_opt("distillbench_report", "report"),
        markdown_path=path_opt("distillbench_markdown", "markdown"),
    )


def _check_writable(target: Path, *, folder: bool, path: Path | None, key: str) -> None:
    """Refuse, before any model runs, an output that could not be written after the run: a file
    where a folder is needed or the reverse, or a nearest existing folder that is not writable."""
    if target.exists():
        if folder and not target.is_dir():
            raise DistillbenchError(f"{target} is a file, but a folder is needed here", path=path,
                                    key=key, fix="name a folder (it is created if missing)")
        if not folder and target.is_dir():
            raise DistillbenchError(f"{target} is a folder, but a file is written here", path=path,
                                    key=key, fix="name a file, e.g. " + str(target / "out"))
    probe = target if target.is_dir() else target.parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise DistillbenchError(f"{target} cannot be created: {probe} is a file", path=path, key=key,
                                fix="choose a path whose parent folders are folders")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise DistillbenchError(f"{target} cannot be written: {probe} is not writable", path=path,
                                key=key, fix="choose a writable location or fix the permissions")


def _validate_models(models: list[ModelSpec], where: Path | None,
                     origins: dict[str, tuple[Path | None, str]] | None = None) -> None:
    origins = origins or {}

    def place(name: str) -> tuple[Path | None, str]:
        return origins.get(name, (where, f"models.{name}"))

    names = [m.name for m in models]
    for m in models:
        if not _MODEL_NAME.match(m.name):
            # the name becomes part of item ids and of baseline file names (<model>.<backend>.json)
            raise DistillbenchError(f"model name {m.name!r} can hold only letters, digits, '-', '_' "
                                    "and '.'", path=place(m.name)[0], key=place(m.name)[1],
                                    fix="rename the model, e.g. small-v2")
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise DistillbenchError(f"two models share the name {dup!r}", path=place(dup)[0],
                                key=place(dup)[1], fix="give every model its own name")
    teachers = [m for m in models if m.role == "teacher"]
    if len(teachers) != 1:
        raise DistillbenchError(f"exactly one teacher is needed, found {len(teachers)}", path=where,
                                key="models", fix="declare one model with role = \"teacher\" "
                                "or pass --distillbench-teacher PATH")
    for m in models:
        path, key = place(m.name)
        if m.teacher and m.teacher not in names:
            raise DistillbenchError(f"model {m.name!r} names teacher {m.teacher!r}, which is not declared",
                                    path=path, key=f"{key}.teacher" if path else key,
                                    fix=f"use one of: {', '.join(t.name for t in teachers)}")
        if m.teacher and m.teacher in names and m.teacher not in {t.name for t in teachers}:
            raise DistillbenchError(f"model {m.name!r} names {m.teacher!r} as its teacher, but "
                                    f"{m.teacher!r} is not the teacher", path=path,
                                    key=f"{key}.teacher" if path else key,
                                    fix=f"use one of: {', '.join(t.name for t in teachers)}")
        if not m.scored and m.role != "control":
            raise DistillbenchError("only a control can be a reference alone (scored = false): "
                                    f"a {m.role} is what the suite scores", path=path,
                                    key=f"{key}.scored" if path else key,
                                    fix="remove scored = false, or make the model a control")
        if m.role == "teacher" and m.expect_distilled is not None:
            raise DistillbenchError("a teacher is not tested for distillation, so expect_distilled "
                                    "does nothing here", path=path, key=f"{key}.expect_distilled" if path else key,
                                    fix="remove it from the teacher; set it on students and controls")
        if m.backend == "hf" and m.path.startswith("/"):
            at = f"{key}.path" if path else key
            if not Path(m.path).exists():
                raise DistillbenchError(f"model {m.name!r}: checkpoint directory {m.path} does not exist",
                                        path=path, key=at,
                                        fix="fix the path, or build the embedded models with "
                                            "'distillbench zoo build'")
            if not Path(m.path).is_dir():
                raise DistillbenchError(f"model {m.name!r}: {m.path} is a file, not a checkpoint "
                                        "directory", path=path, key=at,
                                        fix="point it at the folder that holds config.json, the "
                                            "weights and the tokenizer")
