"""Run settings as dataclasses: every field carries help text and a valid range.

The GUI builds its form from :func:`describe_fields`; the CLI and the project file read and write
the same objects as JSON. Validation never raises while the user is typing: :meth:`RunConfig.problems`
lists every bad field, and :meth:`RunConfig.check` raises one :class:`ConfigError` naming them.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from loradesk.core.jsonsafe import TOO_BIG, JSONLimitError, loads, syntax_error
from loradesk.core.wording import brief

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")
BIASES = ("none", "all", "lora_only")
MODEL_KINDS = ("default", "hub", "local", "gguf")
ASSISTANT_TURNS = ("all", "last")


class ConfigError(ValueError):
    """One or more settings are invalid; ``problems`` lists ``(field path, message)`` pairs."""

    def __init__(self, problems: list[tuple[str, str]], source: str | None = None) -> None:
        self.problems = problems
        where = f"{source}: " if source else ""
        text = "; ".join(f"{name}: {msg}" for name, msg in problems)
        super().__init__(f"{where}invalid settings: {text}")


def _f(default: Any, help: str, **meta: Any) -> Any:
    """A dataclass field with UI metadata: help text plus optional min/max/choices/label/step."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help, **meta})
    return field(default=default, metadata={"help": help, **meta})


class _Settings:
    """Shared behaviour: per-field range checks, dict round trip."""

    def problems(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            meta = f.metadata
            if "choices" in meta and value not in meta["choices"]:
                out.append((f.name, f"must be one of {', '.join(map(str, meta['choices']))} (got {brief(value)})"))
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            lo, hi = meta.get("min"), meta.get("max")
            if lo is not None and value < lo:
                out.append((f.name, f"must be at least {lo} (got {value})"))
            elif hi is not None and value > hi:
                out.append((f.name, f"must be at most {hi} (got {value})"))
        return out

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "") -> Any:
        kwargs, problems = cls.parse(data, where)
        if problems:
            raise ConfigError(problems)
        return cls(**kwargs)

    @classmethod
    def parse(cls, data: Any, where: str = "") -> tuple[dict[str, Any], list[tuple[str, str]]]:
        """``(field values, problems)`` of a JSON object: every unknown key and wrong type at once."""
        if not isinstance(data, dict):
            return {}, [(where.rstrip(".") or cls.__name__, "expected a JSON object")]
        known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
        kwargs: dict[str, Any] = {}
        bad: list[tuple[str, str]] = []
        defaults = cls()
        for name, value in data.items():
            if name not in known:
                bad.append((f"{where}{name}", _unknown(name, list(known))))
                continue
            expected = getattr(defaults, name)
            coerced = _coerce(value, expected)
            if coerced is _BAD:
                bad.append((f"{where}{name}", f"expected {type(expected).__name__}, got {brief(value)}"))
            else:
                kwargs[name] = coerced
        return kwargs, bad


def _unknown(name: str, allowed: list[str]) -> str:
    """``unknown setting`` with the likely intended key, or the allowed ones."""
    import difflib

    close = difflib.get_close_matches(name, allowed, n=1)
    hint = f"did you mean {close[0]}?" if close else f"allowed: {', '.join(allowed)}"
    return f"unknown setting ({hint})"


_BAD = object()


def _coerce(value: Any, expected: Any) -> Any:
    """Accept JSON values of the right kind (ints for floats too); anything else is ``_BAD``."""
    if isinstance(expected, bool):
        return value if isinstance(value, bool) else _BAD
    if isinstance(expected, int):
        return value if isinstance(value, int) and not isinstance(value, bool) else _BAD
    if isinstance(expected, float):  # NaN would slip past every range check; 10**400 has no float
        ok = isinstance(value, int | float) and not isinstance(value, bool) and value == value
        try:
            return float(value) if ok else _BAD
        except OverflowError:
            return _BAD
    if isinstance(expected, str):
        return value if isinstance(value, str) else _BAD
    if isinstance(expected, list):
        return list(value) if isinstance(value, list) and all(isinstance(v, str) for v in value) else _BAD
    return value


@dataclass
class ModelSettings(_Settings):
    """Which base model to tune."""

    kind: str = _f("default", "Where the base model comes from: the built-in default (SmolLM2-135M-Instruct, "
                   "works offline), a Hugging Face Hub id, a local model folder, or a GGUF file.",
                   choices=MODEL_KINDS, label="Source")
    name: str = _f("", "Hub id (e.g. Qwen/Qwen1.5-1.8B-Chat), folder path or .gguf path. "
                   "Ignored for the built-in default.", label="Model")
    revision: str = _f("", "Hub branch, tag or commit to download (empty: main).", label="Revision")
    trust_remote_code: bool = _f(False, "Run Python code shipped with the model. Only turn this on for "
                                 "models you trust.", label="Trust remote code")

    def problems(self) -> list[tuple[str, str]]:
        out = super().problems()
        if self.kind != "default" and not self.name.strip():
            out.append(("name", f"a {self.kind} model needs a name or path"))
        if self.kind == "gguf" and self.name and not self.name.lower().endswith(".gguf"):
            out.append(("name", "a GGUF model must be a .gguf file"))
        return out


@dataclass
class LoraSettings(_Settings):
    """The LoRA adapter's shape (peft.LoraConfig)."""

    r: int = _f(8, "Rank of the low-rank update. Higher learns more but trains slower and overfits sooner.",
                min=1, max=1024, label="Rank (r)")
    alpha: int = _f(32, "Scaling of the update (effective scale = alpha / r, or alpha / sqrt(r) with rsLoRA).",
                    min=1, max=4096, label="Alpha")
    dropout: float = _f(0.0, "Dropout on the LoRA input during training; 0 disables it (and trains about 10 % "
                        "faster). Try 0.05-0.1 against overfitting on larger datasets.",
                        min=0.0, max=0.9, step=0.01, label="Dropout")
    target_modules: list[str] = _f(["auto"], "Linear layers that get an adapter. 'auto' picks every attention "
                                   "and MLP projection the model has (q/k/v/o, gate/up/down, ...).",
                                   label="Target modules")
    bias: str = _f("none", "Which biases to train alongside the adapter.", choices=BIASES, label="Bias")
    use_rslora: bool = _f(False, "Rank-stabilised LoRA: scale by alpha / sqrt(r), steadier at high ranks.",
                          label="rsLoRA")
    use_dora: bool = _f(False, "Weight-decomposed LoRA (DoRA): often a little better, about 2x slower.",
                        label="DoRA")

    def problems(self) -> list[tuple[str, str]]:
        out = super().problems()
        if not self.target_modules or any(not m.strip() for m in self.target_modules):
            out.append(("target_modules", "list at least one module name, or 'auto'"))
        return out


@dataclass
class TrainingSettings(_Settings):
    """How the adapter is trained (transformers.TrainingArguments and our data handling)."""

    epochs: float = _f(3.0, "Passes over the training rows. Ignored when max steps is above 0.",
                       min=0.01, max=1000.0, step=0.5, label="Epochs")
    max_steps: int = _f(0, "Stop after this many optimizer steps (0: train for the given epochs).",
                        min=0, max=10_000_000, label="Max steps")
    learning_rate: float = _f(1e-3, "Peak learning rate. LoRA tolerates much higher rates than full "
                              "fine-tuning: 1e-4 to 2e-3 is typical.", min=1e-7, max=1.0, step=1e-4,
                              decimals=6, label="Learning rate")
    scheduler: str = _f("linear", "How the learning rate changes after warmup.", choices=SCHEDULERS,
                        label="Scheduler")
    warmup_ratio: float = _f(0.05, "Fraction of steps spent ramping the learning rate up from 0.",
                             min=0.0, max=0.5, step=0.01, label="Warmup ratio")
    batch_size: int = _f(8, "Rows per step on the device.", min=1, max=4096, label="Batch size")
    grad_accum: int = _f(1, "Steps whose gradients are summed before each update (effective batch = "
                         "batch size x this).", min=1, max=1024, label="Gradient accumulation")
    max_length: int = _f(256, "Longest training text in tokens; longer rows are cut (and reported).",
                         min=8, max=131_072, label="Max length")
    weight_decay: float = _f(0.0, "AdamW weight decay on the adapter weights.", min=0.0, max=1.0, step=0.01,
                             label="Weight decay")
    seed: int = _f(42, "Seed for shuffling, the validation split and adapter initialisation.",
                   min=0, max=2**31 - 1, label="Seed")
    precision: str = _f("auto", "Number format for training. auto: bf16 where the device supports it, "
                        "else fp16 on CUDA, fp32 on CPU.", choices=PRECISIONS, label="Precision")
    validation_fraction: float = _f(0.0, "Share of rows held out to measure eval loss (0: none).",
                                    min=0.0, max=0.5, step=0.05, label="Validation fraction")
    logging_steps: int = _f(1, "Report the training loss every this many steps.", min=1, max=100_000,
                            label="Log every")
    eval_steps: int = _f(0, "Evaluate every this many steps (0: at the end of each epoch).",
                         min=0, max=100_000, label="Eval every")
    save_steps: int = _f(0, "Save a resumable checkpoint every this many steps (0: at each epoch end).",
                         min=0, max=100_000, label="Checkpoint every")
    save_minutes: float = _f(10.0, "Also save a resumable checkpoint every this many minutes of training, so a "
                             "crash or power cut loses at most that much (0: off). Two checkpoints are kept.",
                             min=0.0, max=1440.0, step=1.0, label="Checkpoint every (minutes)")
    completion_only_loss: bool = _f(True, "Train only on the answer: prompt and template tokens carry no "
                                    "loss. Turn off to also learn to reproduce the prompts.",
                                    label="Completion-only loss")
    use_chat_template: bool = _f(True, "Format rows with the model's chat template (user = prompt, "
                                 "assistant = completion). Off: prompt + newline + completion + EOS.",
                                 label="Use chat template")
    assistant_turns: str = _f("all", "Which assistant turns of a conversation row carry loss: all of them, or "
                              "only the last (earlier answers are then context, like the user's turns). "
                              "User, tool and system text never do.", choices=ASSISTANT_TURNS,
                              label="Train assistant turns")
    tools_as_text: bool = _f(False, "Write tool calls, tool results and the tools list as plain text "
                             "(<tool_call>{\"name\": ..., \"arguments\": ...}</tool_call>, <tool_response>, a "
                             "<tools> block after the system prompt) instead of leaving them to the chat "
                             "template. Needed for models whose template has no tool support.",
                             label="Tool calls as text")
    group_by_length: bool = _f(True, "Batch rows of similar length together to waste less on padding.",
                               label="Group by length")
    threads: int = _f(0, "CPU threads for training (0: let torch decide).", min=0, max=512,
                      label="CPU threads")
    compile: bool = _f(False, "Compile the model with torch.compile before training: on the CPU each step then "
                       "takes about half the time, after a one-time compile of several minutes (cached on disk "
                       "for later runs of the same model). Worth it for runs of half an hour or more.",
                       label="Compile the model")
    preflight: bool = _f(True, "Before a run, train three steps on its longest batch to measure memory and time "
                         "per step, and warn if it will not fit (the app checks again when the model or "
                         "settings change).", label="Pre-flight check")
    stop_when_learned: bool = _f(True, "End the run early, with its adapter saved as for a finished run, once it has "
                                 "learned: when the held-out questions are answered with their expected phrase "
                                 "(the target share below), or, with only a validation split, when the eval loss "
                                 "has stopped improving (patience). Runs without either train every step.",
                                 label="Stop when learned")
    learned_check_steps: int = _f(8, "Check whether the run has learned every this many optimizer steps (held-out "
                                  "questions answered greedily, or an evaluation). The checks' time is left out of "
                                  "the reported speed; checks that cost much are spaced further apart.",
                                  min=1, max=100_000, label="Check learned every")
    learned_target: float = _f(0.9, "Share of held-out questions that must be answered with their expected "
                               "phrase for the run to count as learned (0.9: 15 of 16).", min=0.0, max=1.0,
                               step=0.05, label="Learned at share")
    learned_patience: int = _f(2, "With a validation split and no held-out questions: stop once the eval loss has "
                               "not improved for this many checks in a row.", min=1, max=1000,
                               label="Patience (checks)")


@dataclass
class RunConfig:
    """Everything needed to reproduce a run: model, adapter shape, training settings."""

    model: ModelSettings = field(default_factory=ModelSettings)
    lora: LoraSettings = field(default_factory=LoraSettings)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    name: str = ""

    SECTIONS = ("model", "lora", "training")

    def problems(self) -> list[tuple[str, str]]:
        """Every invalid field as ``("section.field", message)``; empty when valid."""
        return [(f"{s}.{n}", m) for s in self.SECTIONS for n, m in getattr(self, s).problems()]

    def check(self) -> RunConfig:
        """Raise :class:`ConfigError` if any field is invalid; return self for chaining."""
        problems = self.problems()
        if problems:
            raise ConfigError(problems)
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **{s: getattr(self, s).to_dict() for s in self.SECTIONS}}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str | Path | None = None) -> RunConfig:
        """Settings from JSON data; a :class:`ConfigError` lists every bad key at once (and names ``source``)."""
        if not isinstance(data, dict):
            raise ConfigError([("config", "expected a JSON object")], str(source) if source else None)
        problems = [(k, f"unknown section (allowed: {', '.join((*cls.SECTIONS, 'name'))})")
                    for k in sorted(set(data) - {*cls.SECTIONS, "name"})]
        parts: dict[str, Any] = {}
        for section, kind in (("model", ModelSettings), ("lora", LoraSettings), ("training", TrainingSettings)):
            kwargs, bad = kind.parse(data.get(section, {}), f"{section}.")
            problems += bad
            parts[section] = kind(**kwargs)
        if "name" in data and not isinstance(data["name"], str):
            problems.append(("name", f"expected str, got {brief(data['name'])}"))
        if problems:
            raise ConfigError(problems, str(source) if source else None)
        return cls(name=str(data.get("name", "")), **parts)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def save(self, path: str | Path) -> None:
        from loradesk.core.fileio import atomic_write_text

        atomic_write_text(Path(path), self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        path = Path(path)
        try:
            data = loads(path.read_bytes().decode("utf-8-sig"))
        except FileNotFoundError:
            raise ConfigError([("file", "not found")], str(path)) from None
        except UnicodeDecodeError as exc:
            raise ConfigError([("file", f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x})")], str(path)) from None
        except json.JSONDecodeError as exc:
            raise ConfigError([(f"line {exc.lineno}", syntax_error(exc))], str(path)) from None
        except JSONLimitError as exc:
            raise ConfigError([("file", f"the JSON is {exc}")], str(path)) from None
        except MemoryError:
            raise ConfigError([("file", f"the file is {TOO_BIG}")], str(path)) from None
        return cls.from_dict(data, path)


@dataclass(frozen=True)
class FieldInfo:
    """What a form needs to show one setting."""

    section: str
    name: str
    label: str
    help: str
    default: Any
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    decimals: int | None = None
    choices: tuple[str, ...] | None = None

    @property
    def path(self) -> str:
        return f"{self.section}.{self.name}"


def describe_fields(section: str) -> Iterator[FieldInfo]:
    """Yield :class:`FieldInfo` for each field of ``model``, ``lora`` or ``training``."""
    cls = {"model": ModelSettings, "lora": LoraSettings, "training": TrainingSettings}[section]
    defaults = cls()
    for f in fields(cls):
        m = f.metadata
        yield FieldInfo(
            section=section, name=f.name, label=m.get("label", f.name), help=m["help"],
            default=getattr(defaults, f.name), minimum=m.get("min"), maximum=m.get("max"),
            step=m.get("step"), decimals=m.get("decimals"),
            choices=tuple(m["choices"]) if "choices" in m else None,
        )


PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "Quick demo": {"lora": {"r": 8, "alpha": 32}, "training": {"epochs": 2.0, "learning_rate": 1e-3,
                                                                "batch_size": 8}},
    "Balanced": {"lora": {"r": 16, "alpha": 32}, "training": {"epochs": 3.0, "learning_rate": 5e-4,
                                                              "batch_size": 8}},
    "Thorough": {"lora": {"r": 32, "alpha": 64}, "training": {"epochs": 6.0, "learning_rate": 2e-4,
                                                              "batch_size": 8, "validation_fraction": 0.1}},
}


def apply_preset(config: RunConfig, preset: str) -> RunConfig:
    """A copy of ``config`` with the named preset's values on top (the model is kept)."""
    data = config.to_dict()
    for section, values in PRESETS[preset].items():
        data[section].update(values)
    return RunConfig.from_dict(data)
