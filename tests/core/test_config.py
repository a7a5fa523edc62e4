"""Settings: defaults valid, ranges enforced with clear messages, JSON round trip, presets."""

from __future__ import annotations

import json

import pytest

from loradesk.core.config import (
    PRESETS,
    ConfigError,
    LoraSettings,
    RunConfig,
    TrainingSettings,
    apply_preset,
    describe_fields,
)


def test_defaults_are_valid_and_match_the_fast_recipe() -> None:
    cfg = RunConfig()
    assert cfg.problems() == []
    assert cfg.training.learning_rate == pytest.approx(1e-3)
    assert cfg.training.batch_size == 8
    assert cfg.lora.r == 8 and cfg.lora.alpha == 32


@pytest.mark.parametrize(("section", "name", "value", "fragment"), [
    ("lora", "r", 0, "at least 1"),
    ("lora", "dropout", 0.95, "at most 0.9"),
    ("lora", "bias", "some", "must be one of none, all, lora_only"),
    ("training", "learning_rate", 0.0, "at least"),
    ("training", "validation_fraction", 0.9, "at most 0.5"),
    ("training", "precision", "fp8", "must be one of auto"),
    ("training", "scheduler", "zigzag", "must be one of"),
])
def test_out_of_range_values_are_named(section: str, name: str, value: object, fragment: str) -> None:
    cfg = RunConfig()
    setattr(getattr(cfg, section), name, value)
    problems = dict(cfg.problems())
    assert fragment in problems[f"{section}.{name}"]
    with pytest.raises(ConfigError, match=f"{section}.{name}"):
        cfg.check()


def test_model_source_needs_a_name_and_gguf_suffix() -> None:
    cfg = RunConfig()
    cfg.model.kind = "hub"
    assert "model.name" in dict(cfg.problems())
    cfg.model.kind, cfg.model.name = "gguf", "/tmp/model.bin"
    assert "GGUF" in dict(cfg.problems())["model.name"]


def test_empty_target_modules_refused() -> None:
    assert dict(LoraSettings(target_modules=[]).problems())["target_modules"].startswith("list at least")


def test_json_round_trip(tmp_path) -> None:
    cfg = RunConfig()
    cfg.lora.target_modules = ["q_proj", "v_proj"]
    cfg.training.epochs = 2.5
    cfg.model.kind, cfg.model.name = "hub", "Qwen/Qwen1.5-1.8B-Chat"
    path = tmp_path / "run.json"
    cfg.save(path)
    assert RunConfig.load(path) == cfg
    assert json.loads(path.read_text())["training"]["epochs"] == 2.5


def test_load_reports_file_and_field(tmp_path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"training": {"batch_size": "eight", "warp": 1}}))
    with pytest.raises(ConfigError, match=r"bad.json.*training.warp: unknown setting"):
        RunConfig.load(path)
    path.write_text(json.dumps({"training": {"batch_size": "eight"}}))
    with pytest.raises(ConfigError, match=r"training.batch_size: expected int"):
        RunConfig.load(path)
    path.write_text("{ not json")
    with pytest.raises(ConfigError, match="line 1"):
        RunConfig.load(path)


def test_ints_accepted_for_float_fields_but_not_bools() -> None:
    assert TrainingSettings.from_dict({"epochs": 2}).epochs == 2.0
    with pytest.raises(ConfigError):
        TrainingSettings.from_dict({"epochs": True})


def test_every_field_has_help_and_a_label() -> None:
    for section in RunConfig.SECTIONS:
        infos = list(describe_fields(section))
        assert infos
        for info in infos:
            assert len(info.help) > 15, info.path
            assert info.label


def test_presets_apply_and_stay_valid() -> None:
    base = RunConfig()
    base.model.kind, base.model.name = "local", "/models/x"
    for name in PRESETS:
        cfg = apply_preset(base, name)
        assert cfg.problems() == []
        assert cfg.model == base.model
    assert apply_preset(base, "Thorough").lora.r == PRESETS["Thorough"]["lora"]["r"]
