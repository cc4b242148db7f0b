"""timm's model sources: a model name may carry a prefix saying where its config (and weights)
come from, ``hf-hub:org/model`` (the Hugging Face Hub) or ``local-dir:/path`` (a folder with timm's
``config.json`` and the weights). timm resolves both; these helpers tell them apart from a plain
architecture name and turn an unreachable hub into one error line.
"""
from __future__ import annotations

import timm
import torch
from torch import nn

SOURCES = ("hf-hub", "local-dir")   # timm's model-name prefixes: where the model's config comes from


def model_source(name: str) -> str | None:
    """``"hf-hub"`` or ``"local-dir"`` for a name with timm's source prefix, else None."""
    head, sep, _ = name.partition(":")
    return head if sep and head in SOURCES else None


def arch_name(name: str) -> str:
    """What to build without weights: a sourced name as it is (timm reads its config), else the
    architecture without its pretrained tag (``vit_small_patch16_224.augreg_in1k`` ->
    ``vit_small_patch16_224``)."""
    return name if model_source(name) else name.split(".")[0]


class ModelUnreachableError(ValueError):
    """A ``hf-hub:`` model whose config or weights cannot be fetched (offline, unknown repo)."""


def _unreachable(name: str, err: Exception) -> ModelUnreachableError:
    why = " ".join(str(err).split())[:160] or type(err).__name__
    return ModelUnreachableError(
        f"model {name!r} comes from the Hugging Face Hub and could not be fetched "
        f"({type(err).__name__}: {why}): it needs the network, or a local copy: download the "
        "repository's folder (config.json and the weights) and pass local-dir:/path/to/it")


def timm_create(name: str, **kwargs) -> nn.Module:
    """``timm.create_model(name, **kwargs)``; for a ``hf-hub:`` name, a failure to fetch it is
    one ModelUnreachableError naming the model and the way out (TypeError, a bad argument,
    passes through)."""
    if model_source(name) != "hf-hub":
        return timm.create_model(name, **kwargs)
    try:
        return timm.create_model(name, **kwargs)
    except TypeError:
        raise
    except Exception as err:  # hub and network errors come in many types
        raise _unreachable(name, err) from None


def meta_model(name: str, **kwargs) -> nn.Module:
    """``name`` built on the meta device without weights, to read its shape or parameter count:
    timm's weight initialisation is skipped where the model takes ``weight_init="skip"`` (ViTs;
    it costs about a second per model on the meta device), kept where it does not (CaiT)."""
    with torch.device("meta"):
        try:
            return timm_create(name, pretrained=False, weight_init="skip", **kwargs)
        except TypeError:
            return timm_create(name, pretrained=False, **kwargs)
