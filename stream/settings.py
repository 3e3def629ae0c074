"""Process settings and pipeline specs: one definition each, checked before anything starts.

Two models:

- ``ProcessSettings``: what a worker process needs whatever it learns (Kafka, Redis, HTTP,
  the snapshot key, timings), from flags > ``DRIFTLINE_*`` environment > defaults;
- ``PipelineSpec``: one pipeline as written in the YAML file given to
  ``driftline worker --config`` (topics, task, learner, monitor, label join, checkpoints,
  outputs). Unknown keys are errors.

Both are cut from the one flat ``stream.config.Settings`` the runtime runs on: the
fields, their types, bounds, defaults and help text are written once, there, and the CLI's
flags, the file's keys and the environment's names all come from them. A pipeline's
runtime settings are ``spec.settings(process)``: the process settings, with every pipeline
field taken from the file or its default (never from the environment, so a stray
``DRIFTLINE_LEARNER`` cannot change a pipeline the file describes).

The whole file is validated before any pipeline starts; every problem is reported at
once, each naming the path in the file, what is wrong and the fix:
``pipelines[1].learner.params.n_models: must be an integer, got 'ten'``.
"""

from __future__ import annotations

import argparse
import inspect
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model
from pydantic_settings import BaseSettings, SettingsConfigDict

from stream.config import Settings
from stream.exceptions import ConfigError

#: a pipeline's keys in the file -> the Settings field each one sets
SPEC_FIELDS: dict[str, str] = {
    "name": "pipeline",
    "task": "task",
    "events_topic": "events_topic",
    "labels_topic": "labels_topic",
    "seed": "seed",
    "batch_size": "batch_size",
    "learner.name": "learner",
    "learner.params": "learner_params",
    "learner.label_aware": "label_aware_predictions",
    "monitor.detector": "detector",
    "monitor.params": "detector_params",
    "monitor.direction": "drift_direction",
    "monitor.reaction": "drift_reaction",
    "monitor.rolling_window": "rolling_window",
    "checkpoint.every_events": "checkpoint_every_events",
    "checkpoint.every_s": "checkpoint_every_s",
    "outputs.predictions": "predictions_topic",
    "outputs.alerts": "alerts_topic",
    "outputs.dead_letters": "dead_letter_topic",
    "outputs.publish_predictions": "publish_predictions",
    "labels.ttl_events": "label_ttl_events",
    "labels.ttl_s": "label_ttl_s",
    "labels.delay_ms": "label_delay_ms",
    "labels.on_expiry": "label_on_expiry",
    "labels.default": "label_default",
    "labels.remember": "label_remember",
}
_PATH_OF = {flat: path for path, flat in SPEC_FIELDS.items()}
#: Settings fields of the process: every one a pipeline spec does not set (the consumer
#: group is the pipeline's own, from its name), so a new setting is a process setting
#: until a pipeline key is made for it
PROCESS_FIELDS: tuple[str, ...] = tuple(
    name for name in Settings.model_fields if name not in _PATH_OF and name != "group_id"
)
#: keys a pipeline must name
_REQUIRED = frozenset({"name", "events_topic", "learner.name"})
_FORBID = ConfigDict(extra="forbid", strict=True)


def _process_model() -> type[BaseSettings]:
    fields = {name: (Settings.model_fields[name].annotation, Settings.model_fields[name]) for name in PROCESS_FIELDS}
    model = create_model(  # type: ignore[call-overload]
        "ProcessSettings",
        __base__=BaseSettings,
        __doc__="Settings of the worker process (Kafka, Redis, HTTP, keys, timings): flags > environment > defaults.",
        **fields,
    )
    model.model_config = SettingsConfigDict(env_prefix="DRIFTLINE_", frozen=True, extra="forbid", populate_by_name=True)
    model.model_rebuild(force=True)
    return model


ProcessSettings = _process_model()


def _section(name: str, keys: dict[str, str]) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for key, flat in keys.items():
        info = Settings.model_fields[flat]
        required = f"{name}.{key}" in _REQUIRED if name else key in _REQUIRED
        fields[key] = (info.annotation, Field(... if required else None, description=info.description))
    return create_model(f"{name.title() or 'Pipeline'}Section", __config__=_FORBID, **fields)  # type: ignore[call-overload]


def _spec_model() -> type[BaseModel]:
    sections: dict[str, dict[str, str]] = {}
    top: dict[str, str] = {}
    for path, flat in SPEC_FIELDS.items():
        head, _, key = path.partition(".")
        if key:
            sections.setdefault(head, {})[key] = flat
        else:
            top[head] = flat
    fields: dict[str, Any] = {}
    for key, flat in top.items():
        info = Settings.model_fields[flat]
        fields[key] = (info.annotation, Field(... if key in _REQUIRED else None, description=info.description))
    for head, keys in sections.items():
        model = _section(head, keys)
        if head == "learner":
            fields[head] = (model, ...)
        else:
            fields[head] = (model, Field(default_factory=model))
    return create_model("PipelineSpecBase", __config__=_FORBID, **fields)  # type: ignore[call-overload]


class PipelineSpec(_spec_model()):  # type: ignore[misc]
    """One pipeline of the file; ``settings(process)`` is what its runtime runs on."""

    def flat(self) -> dict[str, Any]:
        """The Settings fields this spec sets (the ones the file names, plus output defaults)."""
        out: dict[str, Any] = {}
        for path, flat in SPEC_FIELDS.items():
            head, _, key = path.partition(".")
            value = getattr(getattr(self, head), key) if key else getattr(self, head)
            if value is not None:
                out[flat] = value
        # outputs default per pipeline, so two pipelines never share one by accident
        out.setdefault("predictions_topic", f"{self.name}-predictions")
        out.setdefault("alerts_topic", f"{self.name}-alerts")
        out.setdefault("dead_letter_topic", f"{self.name}-dead-letters")
        return out

    def settings(self, process: BaseSettings) -> Settings:
        values = {name: getattr(process, name) for name in PROCESS_FIELDS}
        defaults = {
            name: info.get_default(call_default_factory=True)
            for name, info in Settings.model_fields.items()
            if name not in PROCESS_FIELDS
        }
        defaults["labels_topic"] = None  # a file pipeline joins labels only from a topic it names
        flat = self.flat()
        flat["join_labels"] = flat.get("labels_topic") is not None
        return Settings(**{**defaults, **values, **flat})


class PipelinesFile(BaseModel):
    """The file: ``pipelines:``, a list of pipeline specs."""

    model_config = _FORBID
    pipelines: list[PipelineSpec] = Field(min_length=1)


# ------------------------------------------------------------------ loading


def load_process(**overrides: Any) -> BaseSettings:
    """Process settings from flags (``overrides``, None meaning unset) and the environment."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    try:
        return ProcessSettings(**overrides)
    except ValidationError as exc:
        raise ConfigError("invalid process settings:\n  " + "\n  ".join(_env_problems(exc))) from None


def _env_problems(exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "settings"
        out.append(f"{field} (env DRIFTLINE_{field.upper()}): {err['msg']} (got {err.get('input')!r})")
    return out


def load_pipelines(path: Path | str, process: BaseSettings | None = None) -> list[tuple[PipelineSpec, Settings]]:
    """Read and validate the whole file; return each pipeline's spec and runtime settings.

    Raises one ConfigError listing every problem found (nothing has started yet).
    """
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"--config {path}: cannot read it: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    return validate_pipelines(data, process, source=str(path))


def validate_pipelines(data: Any, process: BaseSettings | None = None, *, source: str = "config") -> list[tuple[PipelineSpec, Settings]]:
    process = process if process is not None else load_process()
    problems: list[str] = []
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: must be a mapping with a 'pipelines' list, e.g.\n  pipelines:\n    - name: fraud\n      events_topic: tx\n      learner: {{name: driftmoe}}")
    unknown = sorted(set(data) - {"pipelines"})
    problems.extend(f"{k}: is not a known key; the file has one key, pipelines (a list)" for k in unknown)
    items = data.get("pipelines")
    if not isinstance(items, list) or not items:
        problems.append(f"pipelines: must be a non-empty list of pipelines, got {_got(items)}")
        raise ConfigError(_report(source, problems))
    out: list[tuple[PipelineSpec, Settings]] = []
    # each pipeline on its own, so that one bad pipeline does not hide another's problems
    for i, item in enumerate(items):
        try:
            spec = PipelineSpec.model_validate(item)
        except ValidationError as exc:
            problems.extend(_spec_problem({**e, "loc": ("pipelines", i, *e["loc"])}, data) for e in exc.errors())
            continue
        try:
            settings = spec.settings(process)
        except ValidationError as exc:
            problems.extend(_settings_problem(i, spec.name, e) for e in exc.errors())
            continue
        problems.extend(_learner_problems(i, spec.name, settings))
        out.append((spec, settings))
    problems.extend(_topic_problems([s for _, s in out]))
    if problems:
        raise ConfigError(_report(source, problems))
    return out


def _report(source: str, problems: list[str]) -> str:
    n = len(problems)
    return f"{source}: {n} problem{'s' if n != 1 else ''}; nothing was started:\n  " + "\n  ".join(problems)


def _loc(parts: tuple[Any, ...]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _got(value: Any) -> str:
    import json

    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_MESSAGES = {
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "dict_type": "must be a mapping",
    "list_type": "must be a list",
    "missing": "is required",
    "extra_forbidden": "is not a known key",
}


def _message(err: dict[str, Any]) -> str:
    text = _MESSAGES.get(err["type"])
    if text is None:
        text = str(err["msg"]).removeprefix("Value error, ")
        text = text[0].lower() + text[1:] if text else text
        text = text.replace("input should be", "must be")
    if err["type"] == "missing":
        return text
    return f"{text}, got {_got(err.get('input'))}"


def _spec_problem(err: dict[str, Any], data: Any) -> str:
    loc = tuple(err["loc"])
    # a union type reports each of its members; the member's name in the path helps nobody
    loc = tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p in {"str", "int", "float", "bool", "none"})))
    path = _loc(loc)
    msg = _message(err)
    if err["type"] == "extra_forbidden":
        parent = loc[:-1]
        known = _known_keys(parent)
        if known:
            msg += f"; the keys here are: {', '.join(known)}"
    elif err["type"] == "missing" and loc and loc[-1] in ("name", "events_topic", "learner"):
        msg += {"name": " (e.g. name: fraud)", "events_topic": " (e.g. events_topic: transactions)", "learner": " (e.g. learner: {name: driftmoe})"}[loc[-1]]
    return f"{path}: {msg}{_named(loc, data)}"


def _known_keys(parent: tuple[Any, ...]) -> list[str]:
    if parent == ():
        return ["pipelines"]
    if len(parent) == 2 and parent[0] == "pipelines":
        return sorted({p.partition(".")[0] for p in SPEC_FIELDS})
    if len(parent) == 3 and parent[0] == "pipelines":
        return [p.partition(".")[2] for p in SPEC_FIELDS if p.startswith(f"{parent[2]}.")]
    return []


def _named(loc: tuple[Any, ...], data: Any) -> str:
    """`` (pipeline "fraud")`` when the path is inside a pipeline that has a name."""
    if len(loc) >= 2 and loc[0] == "pipelines" and isinstance(loc[1], int):
        try:
            name = data["pipelines"][loc[1]].get("name")
        except (KeyError, IndexError, TypeError, AttributeError):
            return ""
        if isinstance(name, str):
            return f' (pipeline "{name}")'
    return ""


def _settings_problem(i: int, name: str, err: dict[str, Any]) -> str:
    flat = str(err["loc"][0]) if err["loc"] else ""
    msg = _message(err)
    if not flat:
        # a check across fields: its message starts with the field it is about
        head, sep, rest = msg.partition(": ")
        if sep and head in Settings.model_fields:
            flat, msg = head, rest
            msg = msg.rsplit(", got ", 1)[0]
    path = _PATH_OF.get(flat, flat or "pipeline")
    return f'pipelines[{i}].{path}: {msg} (pipeline "{name}")'


# ---------------------------------------------------------- learner params


def _learner_problems(i: int, name: str, settings: Settings) -> list[str]:
    """Each parameter against the learner's constructor: name, type, then a real build."""
    from learners.registry import learner_class, make_learner

    where = f"pipelines[{i}].learner.params"
    suffix = f' (pipeline "{name}")'
    cls = learner_class(settings.learner)
    accepted = inspect.signature(cls).parameters
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # a hint naming something not importable: check names only
        hints = {}
    problems = []
    for key, value in settings.learner_params.items():
        if key not in accepted or key in ("self", "seed"):
            hint = "the seed is the pipeline's seed: key" if key == "seed" else "it takes"
            takes = ", ".join(p for p in accepted if p not in ("self", "seed"))
            problems.append(f"{where}.{key}: {settings.learner} has no parameter {key!r}; {hint}: {takes}{suffix}")
            continue
        hint = hints.get(key)
        if hint is None:
            continue
        try:
            adapter = TypeAdapter(hint)
        except Exception:  # a River object (an optimizer, a splitter): built from {name, params}
            continue
        try:
            adapter.validate_python(value, strict=True)
        except ValidationError as exc:
            err = exc.errors()[0]
            problems.append(f"{where}.{key}: {_message({**err, 'input': value})}{suffix}")
    if problems:
        return problems
    try:
        make_learner(settings.learner, settings.learner_params, settings.seed)
    except Exception as exc:  # the constructor's own checks (bounds, choices)
        text = str(exc)
        key = next((k for k in settings.learner_params if text.startswith(k)), None)
        field = f"{where}.{key}" if key else where
        return [f"{field}: {text}{suffix}"]
    return []


# ------------------------------------------------------------------- topics


def _topic_problems(all_settings: list[Settings]) -> list[str]:
    problems = []
    seen_names: dict[str, int] = {}
    outputs: dict[str, tuple[int, str]] = {}
    inputs: dict[str, int] = {}
    for i, s in enumerate(all_settings):
        if s.pipeline in seen_names:
            problems.append(
                f'pipelines[{i}].name: "{s.pipeline}" is already the name of pipelines[{seen_names[s.pipeline]}]; '
                "each pipeline (and its model, snapshots and lease) needs its own name"
            )
        seen_names.setdefault(s.pipeline, i)
        for topic in filter(None, (s.events_topic, s.labels_topic)):
            inputs.setdefault(topic, i)
    for i, s in enumerate(all_settings):
        if seen_names[s.pipeline] != i:
            continue  # refused for its name already; its default outputs would only repeat it
        for key, topic in (("outputs.predictions", s.predictions_topic), ("outputs.alerts", s.alerts_topic), ("outputs.dead_letters", s.dead_letter_topic)):
            if topic in outputs:
                j, other = outputs[topic]
                problems.append(
                    f'pipelines[{i}].{key}: topic "{topic}" is already pipelines[{j}].{other}; '
                    f'outputs cannot be shared (readers could not tell the pipelines apart): name another, e.g. "{s.pipeline}-{key.split(".")[1].replace("_", "-")}"'
                    f' (pipeline "{s.pipeline}")'
                )
                continue
            outputs[topic] = (i, key)
            if topic in inputs:
                problems.append(
                    f'pipelines[{i}].{key}: topic "{topic}" is an input of pipelines[{inputs[topic]}]; '
                    f'a pipeline reading its own outputs would loop: name another (pipeline "{s.pipeline}")'
                )
    return problems


# ---------------------------------------------------------------------- CLI


def add_flags(parser: argparse.ArgumentParser, names: typing.Iterable[str], *, aliases: dict[str, str] | None = None) -> None:
    """One ``--flag`` per Settings field named, its help and type from the field's definition."""
    aliases = aliases or {}
    for name in names:
        info = Settings.model_fields[name]
        flag = aliases.get(name, "--" + name.replace("_", "-"))
        default = info.get_default(call_default_factory=True)
        helptext = (info.description or name).replace("%", "%%")
        if default not in (None, {}, ""):
            helptext += f" [{default}]"
        helptext += f" (env DRIFTLINE_{name.upper()})"
        parser.add_argument(flag, dest=name, type=_flag_type(info.annotation), help=helptext, default=None)


def _flag_type(annotation: Any) -> Any:
    import json

    args = set(typing.get_args(annotation)) - {type(None)} or {annotation}
    if args <= {int}:
        return int
    if args <= {float, int}:
        return float
    if any(typing.get_origin(a) is dict or a is dict for a in args):
        def as_json(text: str) -> Any:
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise argparse.ArgumentTypeError(f"not JSON: {exc}") from exc
            if not isinstance(value, dict):
                raise argparse.ArgumentTypeError("must be a JSON object")
            return value

        return as_json
    if args <= {bool}:
        def as_bool(text: str) -> bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise argparse.ArgumentTypeError("must be true or false")

        return as_bool
    return str
