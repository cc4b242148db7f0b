"""Declared access to a ViT's per-block residual stream, gradients and attention maps.

No model is edited: forward hooks read each block's output, hooks on those output tensors their
gradients (no module backward hook, so the model is left as it was found), and attention maps
are read at the ``attn_drop`` module (fused attention is switched off while recording and
restored afterwards). Features are returned as ``[B, C, H, W]`` over the token grid, prefix
(class/distillation/register) tokens dropped, no final norm -- the same tensors as timm's
``forward_intermediates(x, indices, norm=False, output_fmt="NCHW")``. The grid follows each input
(models built with ``dynamic_img_size=True`` take other image sizes). The prefix tokens can be
recorded beside the maps (``prefix=True``). For CaiT only the self-attention ``blocks`` count (24
for CaiT-S24), not the class-attention blocks.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ddkit.core.anatomy import NotViTLikeError, block_prefix_tokens, residual_blocks


def token_grid(model: nn.Module) -> tuple[int, int]:
    """The (H, W) patch grid of a timm ViT-like model at the image size it was built for."""
    return tuple(model.patch_embed.grid_size)


def input_grid(patch_embed: nn.Module, image_hw: Sequence[int]) -> tuple[int, int]:
    """The (H, W) patch grid ``patch_embed`` makes of an ``image_hw`` input (timm's
    ``dynamic_feat_size``; the fixed ``grid_size`` for embeddings without it)."""
    dynamic = getattr(patch_embed, "dynamic_feat_size", None)
    if dynamic is None:
        return tuple(patch_embed.grid_size)
    return tuple(int(v) for v in dynamic(tuple(int(v) for v in image_hw)))


def tokens_to_map(tokens: torch.Tensor, grid: tuple[int, int],
                  n_prefix: int | None = None) -> torch.Tensor:
    """``[B, N, C]`` block output -> ``[B, C, H, W]``, the first ``N - H*W`` (prefix) tokens
    dropped. ``n_prefix``: the number of prefix tokens expected; any other count is an error."""
    b, n, c = tokens.shape
    h, w = grid
    if n < h * w or (n_prefix is not None and n - h * w != n_prefix):
        expected = "" if n_prefix is None else f" after {n_prefix} prefix token(s)"
        raise NotViTLikeError(
            f"tokens of shape {tuple(tokens.shape)} do not hold the {h}x{w} patch grid"
            f"{expected}: the model's blocks do not all carry the same prefix tokens (ConViT, "
            "for one, adds its class token after its first blocks); pick a model whose every "
            "block carries them, such as a ViT, DeiT, CaiT or EVA model")
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
    keep them in the graph, e.g. for a loss). ``prefix``: also keep the prefix tokens of every
    block output, ``stacked("prefix")`` ``[L, B, P, C]`` (and ``"prefix_gradients"``). Hooks are
    removed on exit, also when the body raises; the model keeps no trace of them.
    """

    def __init__(self, model: nn.Module, layers: Sequence[int] | None = None,
                 features: bool = True, gradients: bool = False, attention: bool = False,
                 detach: bool = True, prefix: bool = False):
        self.model = model
        self.blocks = residual_blocks(model)
        self.layers = _check_layers(layers, len(self.blocks))
        self.want_features, self.want_gradients = features, gradients
        self.want_attention, self.detach, self.want_prefix = attention, detach, prefix
        self.grid = token_grid(model)                # replaced by each input's grid
        self.n_prefix = block_prefix_tokens(model)
        self.features: dict[int, torch.Tensor] = {}
        self.gradients: dict[int, torch.Tensor] = {}
        self.attention: dict[int, torch.Tensor] = {}
        self.prefix: dict[int, torch.Tensor] = {}
        self.prefix_gradients: dict[int, torch.Tensor] = {}
        self._handles: list = []
        self._fused: list[tuple[nn.Module, bool]] = []

    def __enter__(self) -> "FeatureRecorder":
        try:
            self._handles.append(self.model.patch_embed.register_forward_pre_hook(self._see_input))
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

    def _see_input(self, patch_embed: nn.Module, inputs: tuple) -> None:
        self.grid = input_grid(patch_embed, inputs[0].shape[-2:])

    def _tokens(self, i: int, output) -> torch.Tensor:
        if not isinstance(output, torch.Tensor) or output.dim() != 3:
            what = (f"a tensor of shape {tuple(output.shape)}" if isinstance(output, torch.Tensor)
                    else type(output).__name__)
            raise NotViTLikeError(f"block {i} of {type(self.model).__name__} returns {what}, not "
                                  "[B, N, C] tokens: ddkit needs a timm ViT-like model")
        return output

    def _hook_block(self, i: int, block: nn.Module) -> None:
        def save_output(_module, _inputs, output, i=i):
            tokens = self._tokens(i, output)
            grid, p = self.grid, self.n_prefix
            fmap = tokens_to_map(tokens, grid, p)          # checks the token count
            if self.want_features:
                self.features[i] = fmap.detach() if self.detach else fmap
            if self.want_prefix:
                self.prefix[i] = tokens[:, :p].detach()
            if self.want_gradients and tokens.requires_grad:
                def save_grad(grad, i=i, grid=grid):
                    self.gradients[i] = tokens_to_map(grad, grid, p).detach()
                    self.prefix_gradients[i] = grad[:, :p].detach()
                tokens.register_hook(save_grad)
        if self.want_features or self.want_gradients or self.want_prefix:
            self._handles.append(block.register_forward_hook(save_output))
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
        """Recorded tensors of ``kind`` (features | gradients | attention | prefix |
        prefix_gradients) stacked: ``[L, ...]``."""
        store = {"features": self.features, "gradients": self.gradients,
                 "attention": self.attention, "prefix": self.prefix,
                 "prefix_gradients": self.prefix_gradients}.get(kind)
        if store is None:
            raise ValueError(f"kind={kind!r}; choose features, gradients, attention, prefix or "
                             "prefix_gradients")
        missing = [i for i in self.layers if i not in store]
        if missing:
            backward = "and backward " if "gradients" in kind else ""
            raise RuntimeError(f"no {kind} recorded for blocks {missing}: run a forward "
                               f"{backward}pass first")
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
