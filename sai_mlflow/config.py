"""Typed, strict training config from YAML: a typo is an error naming the closest valid key.

A config has our own sections (experiment, stage, tracking, synthetic) and `train:`, the
Ultralytics trainer arguments, checked against Ultralytics' own argument set and types so a
mistake stops here, before a model is built or GPU time is spent.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .data.synthetic import SyntheticSpec, parse_size
from .errors import closest
from .ultralytics_args import is_autobatch
from .yaml_file import load_mapping


class ConfigError(ValueError):
    """A config that cannot be used; the message says what to change."""




class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TrackingSection(Strict):
    memory_interval_s: float = Field(0.5, gt=0, le=60, description="memory sample period; <=1 s keeps peaks")
    publish_interval_s: float = Field(5.0, gt=0, le=600, description="how often points are shipped to MLflow")
    final_flush_timeout_s: float = Field(10.0, gt=0, le=600, description="longest wait for the store at the end")
    log_model: bool = Field(True, description="log best.pt as an MLflow pyfunc model at the end")
    artifact_location: str = Field("", description="artifact root of new experiments (s3://…, a shared path); "
                                                   "empty: beside a local store, else the server's")
    system_metrics: bool = Field(True, description="MLflow's system metrics (CPU, RAM, disk, network, GPU) as system/*")
    system_metrics_interval_s: float = Field(10.0, gt=0, le=600, description="system metrics sample period")


class GuardSection(Strict):
    """The live guard (docs/probe.md): stop at the end of the epoch where one of these codes is found."""

    stop_on: list[str] = Field(default_factory=list, description="reject-level reason codes; [] = warn only")

    @field_validator("stop_on")
    @classmethod
    def _codes(cls, v: list[str]) -> list[str]:
        from .compare.reasons import StopOnError, parse_stop_on

        try:
            return list(parse_stop_on(v))
        except StopOnError as e:
            raise ValueError(str(e).removeprefix("guard.stop_on: ")) from None


class SyntheticSection(Strict):
    """Generate a synthetic dataset at `out` when `train.data` does not exist yet."""

    out: str = "data/synthetic"
    train: int = Field(64, ge=1)
    val: int = Field(16, ge=1)
    size: str = "160x96"
    seed: int = 0

    @field_validator("size")
    @classmethod
    def _size(cls, v: str) -> str:
        parse_size(v)
        return v

    def spec(self) -> SyntheticSpec:
        w, h = parse_size(self.size)
        return SyntheticSpec(train=self.train, val=self.val, width=w, height=h, seed=self.seed)


class TrainConfig(Strict):
    experiment: str = "sai-mlflow"
    run_name: str | None = None
    stage: str = ""
    tracking: TrackingSection = Field(default_factory=TrackingSection)
    guard: GuardSection = Field(default_factory=GuardSection)
    synthetic: SyntheticSection | None = None
    train: dict[str, Any] = Field(default_factory=dict)
    source: str | None = Field(None, exclude=True)

    def train_args(self) -> dict[str, Any]:
        """Ultralytics trainer overrides, as given (Ultralytics fills in the rest).

        A relative `project:` is resolved against the working directory: Ultralytics would put it under
        its global runs_dir (from its settings file), far from where the user ran the command.
        """
        args = dict(self.train)
        project = args.get("project")
        if isinstance(project, str) and project and not os.path.isabs(project):
            args["project"] = os.path.abspath(project)
        return args


def _ultralytics_defaults() -> dict[str, Any]:
    from ultralytics.cfg import DEFAULT_CFG_DICT

    return DEFAULT_CFG_DICT


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def split_override(item: str) -> tuple[str, str]:
    """`--set key=value` as (key, raw value); anything else is refused."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r} is not key=value, e.g. --set batch=8")
    key, _, raw = item.partition("=")
    return key.strip(), raw.strip()


def check_given(key: str, raw: str) -> None:
    """An Ultralytics argument set to nothing (`--set data=`) is a slip, never Ultralytics' default."""
    if raw == "":
        example = {"data": "path/to/data.yaml", "model": "yolov8n.yaml"}.get(key, _ultralytics_defaults().get(key))
        raise ConfigError(f"--set {key}= gives no value: write --set {key}=VALUE"
                          + (f" (e.g. --set {key}={example})" if example not in (None, "") else "")
                          + f", or leave {key} out")


def apply_overrides(doc: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`--set key=value`: a bare Ultralytics key goes under `train`, a dotted one to its section."""
    defaults = _ultralytics_defaults()
    for item in overrides:
        key, raw = split_override(item)
        value = _parse_value(raw)
        if key == "train":
            raise ConfigError(f"--set {item}: 'train' is the section of Ultralytics arguments, not one of them; "
                              "set them one by one, e.g. --set batch=8 --set epochs=3")
        if "." in key:
            section, _, sub = key.partition(".")
            target = doc.setdefault(section, {})
            if not isinstance(target, dict):
                raise ConfigError(f"--set {key}: '{section}' is not a section")
            target[sub] = value
        elif key in ("tracking", "synthetic", "guard"):
            doc[key] = value  # a whole section: null to drop it, or a {mapping}
        elif key in TrainConfig.model_fields and key not in ("train", "source"):
            # our own top-level keys are text
            doc[key] = None if raw.strip().lower() in ("null", "none", "~") else raw.strip()
        elif key in defaults:
            check_given(key, raw)
            doc.setdefault("train", {})[key] = value
        else:
            raise ConfigError(f"--set {key}: unknown key"
                              f"{closest(key, list(defaults) + list(TrainConfig.model_fields))}")
    return doc


_SCIENTIFIC = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _read_numbers(args: dict[str, Any]) -> None:
    """`lr0: 1e-4`, `epochs: 1e3`: YAML 1.1 reads these as text, Python and YAML 1.2 as numbers; the numeric
    arguments take them as numbers (whole ones as int where Ultralytics wants an int)."""
    from ultralytics.cfg import CFG_FLOAT_KEYS, CFG_FRACTION_KEYS, CFG_INT_KEYS

    numeric = CFG_FLOAT_KEYS | CFG_FRACTION_KEYS | CFG_INT_KEYS
    for key, v in args.items():
        if key in numeric and isinstance(v, str) and _SCIENTIFIC.fullmatch(v.strip()):
            x = float(v)
            args[key] = int(x) if key in CFG_INT_KEYS and x.is_integer() else x


def _check_train_args(args: dict[str, Any]) -> None:
    from ultralytics.cfg import check_cfg

    from .ultralytics_args import imgsz_problem

    defaults = _ultralytics_defaults()
    for key in args:
        if key not in defaults:
            raise ConfigError(f"train.{key}: not an Ultralytics training argument{closest(key, defaults)}")
    _read_numbers(args)
    if "imgsz" in args and imgsz_problem(args["imgsz"]):
        raise ConfigError(f"train.imgsz={args['imgsz']!r}: {imgsz_problem(args['imgsz'])}")
    if "model" not in args:
        raise ConfigError("train.model is required, e.g. model: yolov8n.yaml (no download) or yolov8s.pt")
    if "data" not in args:
        raise ConfigError("train.data is required: the path of a data.yaml")
    batch = args.get("batch")
    if batch is not None:
        if isinstance(batch, bool) or not isinstance(batch, int | float):
            raise ConfigError(f"train.batch={batch!r}: must be a number, e.g. batch: 16")
        if is_autobatch(batch):  # Ultralytics settles it; the run records both (batch_size, batch_size_effective)
            args["batch"] = -1 if batch == -1 else float(batch)
        elif batch <= 0 or (isinstance(batch, float) and not batch.is_integer()):
            raise ConfigError(
                f"train.batch={batch}: must be a positive whole number, -1 (AutoBatch) or a fraction 0 < f < 1 "
                "(AutoBatch's share of GPU memory), e.g. batch: 16"
            )
        else:
            args["batch"] = int(batch)
    try:
        check_cfg(dict(args), hard=True)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"train: {e}") from None


def _format_validation(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            parent = TrainConfig
            for p in err["loc"][:-1]:
                ann = parent.model_fields.get(str(p))
                parent = getattr(ann, "annotation", None) if ann else None
                parent = next((a for a in getattr(parent, "__args__", (parent,))
                               if isinstance(a, type) and issubclass(a, BaseModel)), None)
                if parent is None:
                    break
            options = parent.model_fields if parent else {}
            parts.append(f"{loc}: unknown key{closest(str(err['loc'][-1]), options)}")
        else:
            parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                check_data: bool = True) -> TrainConfig:
    """Load, override, validate. Raises ConfigError with one clear message."""
    doc: dict[str, Any] = {}
    if path is not None:
        doc = load_mapping(path, ConfigError, "config file", expected="a mapping of sections")
    doc = apply_overrides(doc, list(overrides or []))
    if not isinstance(doc.get("train", {}), dict):
        raise ConfigError("train: must be a mapping of Ultralytics arguments")
    try:
        cfg = TrainConfig(**doc)
    except ValidationError as e:
        raise ConfigError(_format_validation(e)) from None
    except TypeError as e:
        raise ConfigError(str(e)) from None
    _check_train_args(cfg.train)
    cfg.source = str(path) if path else None
    if check_data:
        data = Path(str(cfg.train["data"])).expanduser()
        if not data.exists() and cfg.synthetic is None:
            raise ConfigError(f"train.data: {data} does not exist "
                              "(make one with `sai-mlflow make-synthetic`, or fix the path)")
    return cfg
