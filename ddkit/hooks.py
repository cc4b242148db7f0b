"""Declared access to a ViT's per-block residual stream, gradients and attention maps.

No model is edited: forward hooks read each block's output, full backward hooks its gradient,
and attention maps are read at the ``attn_drop`` module (fused attention is switched off while
recording and restored afterwards). Features are returned as ``[B, C, H, W]`` over the token
grid, prefix (class/register) tokens dropped, no final norm -- the same tensors as timm's
``forward_intermediates(x, indices, norm=False, output_fmt="NCHW")``. For CaiT only the
self-attention ``blocks`` count (24 for CaiT-S24), not the class-attention blocks.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ddkit.models import residual_blocks


def token_grid(model: nn.Module) -> tuple[int, int]:
    """The (H, W) patch grid of a timm ViT-like model."""
    return tuple(model.patch_embed.grid_size)


def tokens_to_map(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """``[B, N, C]`` block output -> ``[B, C, H, W]``; the first ``N - H*W`` (prefix) tokens dropped."""
    b, n, c = tokens.shape
    h, w = grid
    if n < h * w:
        raise ValueError(f"tokens of shape {tuple(tokens.shape)} hold fewer than the {h}x{w} grid")
    patches = tokens[:, n - h * w:]                               # [B, H*W, C]
    return patches.reshape(b, h, w, c).permute(0, 3, 1, 2)        # [B, C, H, W]


def _check_layers(layers: Sequence[int] | None, depth: int) -> list[int]:
    if layers is None:
        return list(range(depth))
    out = []
    for i in layers:
        if not -depth <= i < depth:
            raise ValueError(f"layer index {i} out of range for a model with {depth} blocks "
                             f"(valid: 0..{depth - 1} or negative from the end)")
        out.append(i % depth)
    return out


class FeatureRecorder:
    """Context manager recording block outputs, their gradients and attention maps.

    >>> with FeatureRecorder(model, gradients=True) as rec:
    ...     model(x)[range(len(y)), y].sum().backward()
    >>> rec.stacked("features")     # [L, B, C, H, W]

    ``layers``: block indices (default all). ``detach``: store features detached (set False to
    keep them in the graph, e.g. for a loss). Hooks are removed on exit, also when the body raises.
    """

    def __init__(self, model: nn.Module, layers: Sequence[int] | None = None,
                 features: bool = True, gradients: bool = False, attention: bool = False,
                 detach: bool = True):
        self.model = model
        self.blocks = residual_blocks(model)
        self.layers = _check_layers(layers, len(self.blocks))
        self.want_features, self.want_gradients = features, gradients
        self.want_attention, self.detach = attention, detach
        self.grid = token_grid(model)
        self.features: dict[int, torch.Tensor] = {}
        self.gradients: dict[int, torch.Tensor] = {}
        self.attention: dict[int, torch.Tensor] = {}
        self._handles: list = []
        self._fused: list[tuple[nn.Module, bool]] = []

    def __enter__(self) -> "FeatureRecorder":
        try:
            for i in self.layers:
                self._hook_block(i, self.blocks[i])
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Remove every hook and restore fused attention flags."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for module, fused in self._fused:
            module.fused_attn = fused
        self._fused.clear()

    def _hook_block(self, i: int, block: nn.Module) -> None:
        if self.want_features:
            def save_output(_module, _inputs, output, i=i):
                fmap = tokens_to_map(output, self.grid)
                self.features[i] = fmap.detach() if self.detach else fmap
            self._handles.append(block.register_forward_hook(save_output))
        if self.want_gradients:
            def save_grad(_module, _grad_in, grad_out, i=i):
                self.gradients[i] = tokens_to_map(grad_out[0], self.grid).detach()
            self._handles.append(block.register_full_backward_hook(save_grad))
        if self.want_attention:
            attn = getattr(block, "attn", None)
            if attn is None or not hasattr(attn, "attn_drop"):
                raise ValueError(f"block {i} ({type(block).__name__}) has no attn.attn_drop to "
                                 "read attention maps from")
            if hasattr(attn, "fused_attn"):
                self._fused.append((attn, attn.fused_attn))
                attn.fused_attn = False

            def save_attention(_module, _inputs, output, i=i):
                self.attention[i] = output.detach()              # [B, heads, N, N]
            self._handles.append(attn.attn_drop.register_forward_hook(save_attention))

    def stacked(self, kind: str = "features") -> torch.Tensor:
        """Recorded tensors of ``kind`` (features | gradients | attention) stacked: ``[L, ...]``."""
        store = {"features": self.features, "gradients": self.gradients,
                 "attention": self.attention}.get(kind)
        if store is None:
            raise ValueError(f"kind={kind!r}; choose features, gradients or attention")
        missing = [i for i in self.layers if i not in store]
        if missing:
            raise RuntimeError(f"no {kind} recorded for blocks {missing}: run a forward "
                               f"{'and backward ' if kind == 'gradients' else ''}pass first")
        return torch.stack([store[i] for i in self.layers])


def block_features(model: nn.Module, x: torch.Tensor,
                   layers: Sequence[int] | None = None) -> torch.Tensor:
    """``[L, B, C, H, W]`` residual-stream features of the chosen blocks (no grad, eval as is)."""
    with torch.no_grad(), FeatureRecorder(model, layers) as rec:
        model(x)
    return rec.stacked()


def forward_with_features(model: nn.Module, x: torch.Tensor,
                          layers: Sequence[int]) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """Logits and ``{block: [B, C, H, W]}`` features in one pass, through timm's own
    ``forward_intermediates(norm=False, output_fmt="NCHW")`` + ``forward_head``.

    ``layers`` is an explicit index list (never an int: timm reads an int ``n`` as "the last n").
    Features keep their autograd graph, so a feature loss can train the model.
    """
    layers = sorted(set(_check_layers(layers, len(residual_blocks(model)))))
    if not layers:
        return model(x), {}
    final, intermediates = model.forward_intermediates(x, indices=list(layers), norm=False,
                                                       output_fmt="NCHW")
    return model.forward_head(final), dict(zip(layers, intermediates))
