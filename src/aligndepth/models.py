"""Loading models and (base, aligned) pairs safely.

A *source* is a local Hugging Face model directory or, for users with network, a hub id
(``org/name``). Loading is safe by default: safetensors weights only and
``trust_remote_code=False``; both are opt-in flags. A pair's tokenizers must share one
vocabulary, because every experiment compares the two models token by token.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aligndepth.devices import (
    input_device,
    release_memory,
    resolve_device,
    resolve_dtype,
    set_cpu_threads,
)
from aligndepth.errors import AlignDepthError
from aligndepth.prompts import PromptFormat
from aligndepth.run_settings import LoadConfig
from aligndepth.weights import check_weight_files

log = logging.getLogger(__name__)

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
#: accelerate's placement strategies (``device_map`` may also name one device, e.g. ``cpu``).
DEVICE_MAP_STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")
ACCELERATE_MISSING = ("--device-map needs accelerate: pip install 'aligndepth[train]' "
                      "(or pip install accelerate)")


@dataclass
class LoadedModel:
    """A causal LM with its tokenizer and provenance."""

    source: str
    model: Any
    tokenizer: Any
    fingerprint: str
    #: the :class:`~aligndepth.engine.served.ServedModel` generating for it, when served
    #: (``model`` is then a :class:`ConfigOnly` stand-in without weights)
    served: Any = None

    @property
    def device(self) -> Any:
        """Where input ids must go (the input embeddings' device, see :func:`input_device`)."""
        return input_device(self.model)

    def placement(self) -> str | dict[str, str]:
        if self.served is not None:
            return "served"
        """``hf_device_map`` (module name → device) when placed by accelerate, else the
        device of the whole model."""
        device_map = getattr(self.model, "hf_device_map", None)
        if device_map:
            return {str(k): str(v) for k, v in device_map.items()}
        return str(self.device)

    def describe(self) -> dict[str, Any]:
        if self.served is not None:
            return {"source": self.source, "fingerprint": self.fingerprint,
                    "engine": self.served.describe(), "placement": "served"}
        return {
            "source": self.source,
            "fingerprint": self.fingerprint,
            "dtype": str(next(self.model.parameters()).dtype).replace("torch.", ""),
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "placement": self.placement(),
        }


class ConfigOnly:
    """What a served model keeps locally: its config and generation config (stop ids,
    context length), no weights."""

    def __init__(self, config: Any, generation_config: Any) -> None:
        self.config = config
        self.generation_config = generation_config

    def parameters(self) -> Any:
        return iter(())


@dataclass
class ModelPair:
    """A pretrained base model and its aligned version, each with a prompt format.

    Defaults follow SPEC: the aligned model through its chat template (no system prompt),
    the base model through the plain completion template. ``loaded_base`` is ``None``
    when the base model was not loaded (no experiment of the run reads it) or has been
    released (:meth:`release_base`).
    """

    loaded_base: LoadedModel | None
    aligned: LoadedModel
    base_format: PromptFormat = field(default_factory=PromptFormat.plain)
    aligned_format: PromptFormat = field(default_factory=PromptFormat.chat)

    @property
    def base(self) -> LoadedModel:
        """The base model; only experiments that declare they read it may ask for it."""
        if self.loaded_base is None:
            raise RuntimeError("the base model is not loaded: the experiment asking for it "
                               "must be listed among those that need the base")
        return self.loaded_base

    @property
    def roles(self) -> tuple[str, ...]:
        """The roles loaded: ``("base", "aligned")``, or ``("aligned",)``."""
        return ("aligned",) if self.loaded_base is None else ("base", "aligned")

    @property
    def tokenizer(self) -> Any:
        """The shared tokenizer (the aligned model's; the vocabularies are identical)."""
        return self.aligned.tokenizer

    def release_base(self) -> None:
        """Drop the base model and return its memory (no later experiment reads it)."""
        if self.loaded_base is None:
            return
        self.loaded_base = None
        release_memory()

    def describe(self) -> dict[str, Any]:
        """JSON-able identity of the pair, recorded in run manifests (the roles loaded)."""
        out = {"aligned": self.aligned.describe(),
               "aligned_format": self.aligned_format.describe()}
        if self.loaded_base is not None:
            out = {"base": self.loaded_base.describe(), **out,
                   "base_format": self.base_format.describe()}
        return out


def _check_local_dir(path: Path, cfg: LoadConfig) -> None:
    if not path.is_dir():
        raise AlignDepthError(f"model path '{path}' is not a directory: give a Hugging Face "
                              "model directory (config.json + weights)")
    if (path / "adapter_config.json").is_file():
        return  # a LoRA adapter: its base is checked when loaded
    if not (path / "config.json").is_file():
        raise AlignDepthError(f"model directory '{path}' has no config.json: is it a Hugging "
                              "Face model directory?")
    if cfg.served is not None:
        return  # the weights are on the server
    files = [p.name for p in path.iterdir() if p.is_file()]
    has_safetensors = any(f.endswith(".safetensors") for f in files)
    pickles = [f for f in files if f.endswith(_PICKLE_SUFFIXES)]
    if not has_safetensors and pickles and not cfg.allow_pickle:
        raise AlignDepthError(
            f"model directory '{path}' holds only a pickle checkpoint ({pickles[0]}), which can "
            "run arbitrary code when loaded: convert it to safetensors, or pass --allow-pickle "
            "if you trust it")
    if not has_safetensors and not pickles:
        raise AlignDepthError(f"model directory '{path}' has no weights (*.safetensors)")
    check_weight_files(path)


def fingerprint(source: str) -> str:
    """A fast content hash of a local model directory (``hub:<id>`` for hub ids).

    Hashes config and tokenizer files whole, and for each weight file its size plus its
    first and last MiB (enough to tell checkpoints apart without reading gigabytes).
    """
    path = Path(source)
    if not path.is_dir():
        return f"hub:{source}"
    h = hashlib.sha256()
    for f in sorted(p for p in path.iterdir() if p.is_file()):
        h.update(f.name.encode())
        size = f.stat().st_size
        h.update(str(size).encode())
        with f.open("rb") as fh:
            if f.suffix in (".json", ".jinja", ".txt", ".model") or size <= 2 << 20:
                h.update(fh.read())
            else:
                h.update(fh.read(1 << 20))
                fh.seek(-(1 << 20), 2)
                h.update(fh.read())
    return "sha256:" + h.hexdigest()[:16]


def _resolve_source(source: str | Path, cfg: LoadConfig) -> tuple[str, bool]:
    """Validate a source; returns (normalised source, is local)."""
    text = str(source)
    path = Path(text).expanduser()
    if path.exists():
        _check_local_dir(path, cfg)
        return str(path), True
    if not _HUB_ID.match(text):
        raise AlignDepthError(f"model directory '{text}' does not exist: check the path "
                              "(or give a hub id such as org/name)")
    return text, False


def _load_error(source: str, local: bool, exc: Exception) -> AlignDepthError:
    where = "directory" if local else "hub id (is the network reachable?)"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return AlignDepthError(f"could not load model {where} '{source}': {first}")


def load_tokenizer(source: str | Path, config: LoadConfig | None = None) -> Any:
    """Load only the tokenizer of a model (cheap; used to check a pair before loading)."""
    from transformers import AutoTokenizer

    cfg = config or LoadConfig()
    src, local = _resolve_source(source, cfg)
    kwargs: dict[str, Any] = {"trust_remote_code": cfg.trust_remote_code}
    if not local and cfg.revision:
        kwargs["revision"] = cfg.revision
    try:
        return AutoTokenizer.from_pretrained(src, **kwargs)
    except (OSError, ValueError) as exc:
        raise _load_error(src, local, exc) from exc


def load_model(source: str | Path, config: LoadConfig | None = None,
               tokenizer: Any = None, role: str = "model") -> LoadedModel:
    """Load a causal LM and its tokenizer from a local directory or a hub id (with
    ``config.served``, only the tokenizer and config; ``role`` names it in errors)."""
    from transformers import AutoModelForCausalLM

    cfg = config or LoadConfig()
    src, local = _resolve_source(source, cfg)
    if tokenizer is None:
        tokenizer = load_tokenizer(src, cfg)
    if cfg.served is not None:
        return _load_served(src, local, cfg, tokenizer, role)
    if local and (Path(src) / "adapter_config.json").is_file():
        return _load_adapter(Path(src), cfg, tokenizer)
    device, device_map = _placement(cfg)
    dtype = resolve_dtype(cfg.dtype, device)
    kwargs: dict[str, Any] = {"trust_remote_code": cfg.trust_remote_code}
    if not local and cfg.revision:
        kwargs["revision"] = cfg.revision
    if device_map is not None:
        kwargs["device_map"] = device_map
    try:
        model = AutoModelForCausalLM.from_pretrained(
            src, dtype=dtype, use_safetensors=None if cfg.allow_pickle else True, **kwargs)
    except (OSError, ValueError) as exc:
        raise _load_error(src, local, exc) from exc
    except RuntimeError as exc:
        if "mismatch" not in str(exc):
            raise
        raise AlignDepthError(f"the weights of '{src}' do not match its config.json (tensor "
                              "sizes differ): the directory mixes files of different models; "
                              "restore the config.json that came with the weights") from exc
    if device_map is None:
        model.to(device)
    model.eval()
    set_cpu_threads(model, cfg.threads)
    log.info("loaded %s (%s, %s)", src, dtype,
             getattr(model, "hf_device_map", None) or device)
    return LoadedModel(src, model, tokenizer, fingerprint(src))


def _load_served(src: str, local: bool, cfg: LoadConfig, tokenizer: Any,
                 role: str) -> LoadedModel:
    from transformers import AutoConfig, GenerationConfig

    try:
        config = AutoConfig.from_pretrained(src, trust_remote_code=cfg.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise _load_error(src, local, exc) from exc
    try:
        generation = GenerationConfig.from_pretrained(src)
    except (OSError, ValueError):
        generation = None
    served = cfg.served.connect(tokenizer, role)  # a ServedConfig (engine/served.py)
    log.info("%s model %s runs on %s (%s)", role, src, served.endpoint, served.model)
    return LoadedModel(src, ConfigOnly(config, generation), tokenizer, fingerprint(src),
                       served=served)


def _placement(cfg: LoadConfig) -> tuple[Any, str | None]:
    """(device that decides the ``auto`` dtype, device_map for from_pretrained or None).

    ``device_map`` wins over ``device``. Checked before any weights load.
    """
    if cfg.device_map is None:
        return resolve_device(cfg.device), None
    if cfg.device != "auto":
        log.info("device_map=%s given: ignoring device=%s", cfg.device_map, cfg.device)
    if importlib.util.find_spec("accelerate") is None:
        raise AlignDepthError(ACCELERATE_MISSING)
    if cfg.device_map in DEVICE_MAP_STRATEGIES:
        return resolve_device("auto"), cfg.device_map
    return resolve_device(cfg.device_map, "--device-map"), cfg.device_map


def _load_adapter(path: Path, cfg: LoadConfig, tokenizer: Any) -> LoadedModel:
    """A LoRA adapter directory: its base (named in adapter_config.json), the adapter
    applied and merged, so it runs like any model."""
    import json

    base = json.loads((path / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not base:
        raise AlignDepthError(f"adapter '{path}' names no base model "
                              "(base_model_name_or_path in adapter_config.json)")
    try:
        from peft import PeftModel
    except ImportError:
        raise AlignDepthError("loading a LoRA adapter needs peft: pip install "
                              "'aligndepth[train]'") from None
    loaded = load_model(adapter_base(path, base), cfg, tokenizer=tokenizer)
    model = PeftModel.from_pretrained(loaded.model, str(path)).merge_and_unload()
    model.eval()
    return LoadedModel(str(path), model, tokenizer, fingerprint(str(path)))


def adapter_base(adapter: Path, base: str) -> str:
    """Where an adapter's base is: a ``.`` path relative to the adapter, else where
    ``train_config.json`` recorded it; a hub id or an absolute path as given."""
    if not base.startswith("."):
        return base
    beside, recorded = (adapter / base).resolve(), adapter / "train_config.json"
    trained_at = json.loads(recorded.read_text()).get("base_source_path") \
        if recorded.is_file() else None
    if beside.exists() or not (trained_at and Path(trained_at).exists()):
        if beside.exists():
            return str(beside)
        where = f" nor at {trained_at}, where it was when trained" if trained_at else ""
        raise AlignDepthError(f"adapter '{adapter}': its base model '{base}' is not at "
                              f"{beside}{where}: move the base model with the adapter, or "
                              "set base_model_name_or_path in adapter_config.json")
    return str(trained_at)


def check_same_vocabulary(tok_a: Any, tok_b: Any, name_a: str = "base",
                          name_b: str = "aligned") -> None:
    """Raise a clear error unless both tokenizers map the same strings to the same ids."""
    va, vb = tok_a.get_vocab(), tok_b.get_vocab()
    if va == vb:
        return
    only_a = sorted(set(va) - set(vb))
    only_b = sorted(set(vb) - set(va))
    moved = sorted(t for t in set(va) & set(vb) if va[t] != vb[t])
    parts = [f"{name_a} has {len(va)} tokens, {name_b} has {len(vb)}"]
    if only_a:
        parts.append(f"only in {name_a}: {', '.join(map(repr, only_a[:3]))}")
    if only_b:
        parts.append(f"only in {name_b}: {', '.join(map(repr, only_b[:3]))}")
    if moved:
        parts.append(f"{len(moved)} tokens with different ids, e.g. {moved[0]!r}")
    raise AlignDepthError("the two models use different vocabularies (" + "; ".join(parts) +
                          "): give a base/aligned pair from the same model family")


def load_pair(base: str | Path | None, aligned: str | Path,
              config: LoadConfig | None = None,
              base_format: PromptFormat | None = None,
              aligned_format: PromptFormat | None = None, *,
              base_config: LoadConfig | None = None,
              aligned_config: LoadConfig | None = None) -> ModelPair:
    """Load a (base, aligned) pair; their vocabularies are checked before any weights load.

    ``base`` ``None`` loads the aligned model alone (for experiments that read only it;
    the pair's ``loaded_base`` is then ``None``). ``base_config`` and ``aligned_config``
    override ``config`` for one model each (e.g. to put the two on different devices, or
    in different dtypes); each defaults to ``config``.
    """
    base_cfg = base_config or config
    aligned_cfg = aligned_config or config
    base_tok = None if base is None else load_tokenizer(base, base_cfg)
    aligned_tok = load_tokenizer(aligned, aligned_cfg)
    if base_tok is not None:
        check_same_vocabulary(base_tok, aligned_tok)
    for cfg in (base_cfg, aligned_cfg)[base is None:]:  # placement before any weights load
        if cfg is None or cfg.served is None:
            _placement(cfg or LoadConfig())
    base_model = None if base is None else load_model(base, base_cfg, base_tok, role="base")
    aligned_model = load_model(aligned, aligned_cfg, aligned_tok, role="aligned")
    return ModelPair(base_model, aligned_model,
                     base_format or PromptFormat.plain(),
                     aligned_format or PromptFormat.chat())
