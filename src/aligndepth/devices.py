"""Where tensors go and in which dtype: devices, input placement, KV-cache and
``logits_to_keep`` arguments, and how many CPU threads a model on the CPU runs on."""

from __future__ import annotations

import inspect
import logging
from typing import Any

from aligndepth.errors import AlignDepthError

log = logging.getLogger(__name__)

#: A model on the CPU under this many parameters runs on one thread unless told otherwise
#: (``--threads``): the organism and tiny test models gain little from more threads, and
#: with several, a CPU shared with other busy processes makes them wait on each other
#: (measured: the organism's decoding exploit took 57 min beside other work at torch's
#: default, 65 s on one thread).
SMALL_MODEL_PARAMETERS = 50_000_000

_CACHE_KEYWORDS: dict[type, str] = {}


def _cache_keyword(cls: type) -> str:
    if cls not in _CACHE_KEYWORDS:
        params = inspect.signature(getattr(cls, "forward")).parameters  # noqa: B009
        _CACHE_KEYWORDS[cls] = "cache" if "cache" in params else "past_key_values"
    return _CACHE_KEYWORDS[cls]


def with_cache(model: Any, cache: Any) -> dict[str, Any]:
    """The keyword argument that hands a KV cache to ``model``'s forward: ``cache`` in the
    transformers versions that renamed it, ``past_key_values`` before."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return {_cache_keyword(type(inner)): cache}


def output_cache(output: Any) -> Any:
    """The KV cache a forward pass returned (``cache``, or ``past_key_values`` before)."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def logits_to_keep(model: Any, keep: int) -> dict[str, Any]:
    """The keyword argument that makes ``model``'s forward compute the output layer (final
    norm, head, Gemma's soft-capping) only for the last ``keep`` positions, so its logits
    are ``(batch, keep, vocab)``: ``logits_to_keep`` (``num_logits_to_keep`` in older
    transformers); empty for a model that takes neither (it returns every position's)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        params = inspect.signature(inner.forward).parameters
    except (TypeError, ValueError):
        return {}
    for name in ("logits_to_keep", "num_logits_to_keep"):
        if name in params:
            return {name: keep}
    log.debug("%s takes no logits_to_keep: computing all logits", type(inner).__name__)
    return {}


def input_device(model: Any) -> Any:
    """The ``torch.device`` input ids must go to: that of the model's input embeddings
    (with accelerate's placement, layers may sit elsewhere); the first parameter's device
    for models without ``get_input_embeddings``."""
    import torch

    getter = getattr(model, "get_input_embeddings", None)
    emb = getter() if callable(getter) else None
    weight = getattr(emb, "weight", None)
    if isinstance(weight, torch.Tensor):
        return weight.device
    return next(model.parameters()).device


def _check_device(device: Any, text: str, flag: str) -> None:
    """Raise a one-line error unless ``device`` exists on this machine."""
    import torch

    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise AlignDepthError(f"{flag} {text}: CUDA is not available on this machine "
                                  "(no GPU, or torch built without CUDA): use --device cpu "
                                  "or --device auto")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise AlignDepthError(f"{flag} {text}: this machine has {count} CUDA device(s) "
                                  f"(cuda:0 to cuda:{count - 1}): use an index below {count}, "
                                  "or --device auto")
    elif device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise AlignDepthError(f"{flag} {text}: MPS (Apple GPU) is not available on this "
                                  "machine: use --device cpu or --device auto")


def resolve_device(device: str, flag: str = "--device") -> Any:
    """``auto`` (cuda, then mps, then cpu) or a device string, checked to exist here
    (``flag`` names the option in error messages).

    Raises:
        AlignDepthError: an unknown device string, or a device this machine lacks.
    """
    import torch

    if device != "auto":
        try:
            resolved = torch.device(device)
        except (RuntimeError, ValueError, TypeError):
            raise AlignDepthError(f"{flag} {device}: unknown device: use auto, cpu, cuda, "
                                  "cuda:N or mps") from None
        _check_device(resolved, device, flag)
        return resolved
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_dtype(dtype: str, device: Any) -> Any:
    import torch

    if dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return getattr(torch, dtype)


def set_cpu_threads(model: Any, threads: int = 0) -> None:
    """Set torch's CPU thread count for ``model`` (a process-wide setting).

    ``threads > 0`` sets that count whatever the device. ``0`` sets one thread when the
    model sits on the CPU and has fewer than :data:`SMALL_MODEL_PARAMETERS` parameters, and
    leaves torch's setting alone otherwise (a GPU model, a large CPU model).
    """
    import torch

    if threads <= 0:
        if input_device(model).type != "cpu":
            return
        if sum(p.numel() for p in model.parameters()) >= SMALL_MODEL_PARAMETERS:
            return
        threads = 1
    if torch.get_num_threads() != threads:
        log.info("torch CPU threads: %d -> %d", torch.get_num_threads(), threads)
        torch.set_num_threads(threads)


def release_memory() -> None:
    """Collect dropped models and hand the CUDA allocator's cached memory back."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
