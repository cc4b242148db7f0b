"""Masked-autoencoder pre-training (He et al. 2022) of a timm ViT, for the self-supervised teacher.

The official release's "MAE" teacher is a masked-autoencoder backbone whose classifier head was
never trained (its logits are nearly uniform; docs/design.md §10). ``MaskedAutoencoder`` wraps a
timm ``VisionTransformer`` as the encoder: the encoder's own patch embedding, position embedding,
blocks and final norm see the visible quarter of the tokens (with the class token), a small
decoder of timm ``Block``s sees every position (mask tokens where the encoder saw nothing) and
predicts each masked patch's pixels, normalised per patch (``norm_pix_loss``). The encoder is
left a plain timm model: its ``state_dict`` loads into the same preset, head untouched.

Written here because timm has the ViT parts but no MAE model or objective.
"""
from __future__ import annotations

import torch
from timm.layers import build_sincos2d_pos_embed
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[B, N, patch*patch*C]``, tokens in row-major grid order (the order
    of timm's patch embedding), pixels of a patch as (row, column, channel)."""
    B, C, H, W = images.shape
    if H % patch or W % patch:
        raise ValueError(f"patchify: image {H}x{W} does not divide into {patch}x{patch} patches")
    x = images.reshape(B, C, H // patch, patch, W // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(B, (H // patch) * (W // patch), patch * patch * C)


def random_masking(batch: int, tokens: int, mask_ratio: float, device,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Which tokens each image keeps: ``keep`` ``[B, n_keep]`` (indices, ascending) and ``mask``
    ``[B, N]`` (1 = masked, the decoder predicts it). A uniform random subset per image, drawn
    from ``generator`` (torch's global RNG when None, so training checkpoints it)."""
    n_keep = max(1, round(tokens * (1 - mask_ratio)))
    noise = torch.rand(batch, tokens, device=device, generator=generator)
    keep = noise.argsort(dim=1)[:, :n_keep].sort(dim=1).values
    mask = torch.ones(batch, tokens, device=device)
    mask.scatter_(1, keep, 0.0)
    return keep, mask


class MaskedAutoencoder(nn.Module):
    """``mae(images)`` -> ``{"loss", "loss_rec"}``: the mean squared error of the predicted pixels
    of the masked patches (per-patch normalised targets), averaged over masked patches then
    over the batch as MAE does (sum over masked patches / number of masked patches)."""

    def __init__(self, encoder: VisionTransformer, mask_ratio: float = 0.75,
                 decoder_dim: int = 64, decoder_depth: int = 2, decoder_heads: int = 2,
                 norm_pix_loss: bool = True):
        super().__init__()
        if not isinstance(encoder, VisionTransformer):
            raise TypeError(f"MAE pre-training needs a timm VisionTransformer encoder, got "
                            f"{type(encoder).__name__}")
        if not 0 < mask_ratio < 1:
            raise ValueError(f"mask_ratio={mask_ratio} must be in (0, 1)")
        self.encoder, self.mask_ratio, self.norm_pix_loss = encoder, mask_ratio, norm_pix_loss
        embed = encoder.patch_embed
        self.patch = embed.patch_size[0]
        self.grid = tuple(embed.grid_size)
        in_chans = embed.proj.in_channels
        self.prefix = encoder.num_prefix_tokens
        self.decoder_embed = nn.Linear(encoder.embed_dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        pos = build_sincos2d_pos_embed(list(self.grid), decoder_dim)          # [N, D], fixed
        self.register_buffer("decoder_pos", pos[None], persistent=False)
        self.decoder_blocks = nn.Sequential(*[Block(decoder_dim, decoder_heads, mlp_ratio=4.0)
                                              for _ in range(decoder_depth)])
        self.decoder_norm = nn.LayerNorm(decoder_dim)
        self.decoder_pred = nn.Linear(decoder_dim, self.patch * self.patch * in_chans)
        nn.init.normal_(self.mask_token, std=0.02)

    def encode(self, images: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """The encoder on the kept tokens: ``[B, prefix + n_keep, C]`` after its final norm."""
        enc = self.encoder
        x = enc._pos_embed(enc.patch_embed(images))                          # [B, P + N, C]
        prefix, patches = x[:, :self.prefix], x[:, self.prefix:]
        index = keep[..., None].expand(-1, -1, patches.shape[-1])
        x = torch.cat([prefix, patches.gather(1, index)], dim=1)             # [B, P + n_keep, C]
        return enc.norm(enc.blocks(enc.norm_pre(x)))

    def decode(self, latent: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Pixel predictions for every token position, ``[B, N, patch*patch*C]``."""
        x = self.decoder_embed(latent[:, self.prefix:])                      # [B, n_keep, D]
        B, _, D = x.shape
        full = self.mask_token.expand(B, self.decoder_pos.shape[1], D).clone()
        full = full.scatter(1, keep[..., None].expand(-1, -1, D), x)         # [B, N, D]
        full = self.decoder_blocks(full + self.decoder_pos)
        return self.decoder_pred(self.decoder_norm(full))

    def target(self, images: torch.Tensor) -> torch.Tensor:
        t = patchify(images, self.patch)                                     # [B, N, p*p*C]
        if self.norm_pix_loss:
            mean, var = t.mean(-1, keepdim=True), t.var(-1, keepdim=True)
            t = (t - mean) / (var + 1e-6).sqrt()
        return t

    def forward(self, images: torch.Tensor,
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        B = images.shape[0]
        keep, mask = random_masking(B, self.grid[0] * self.grid[1], self.mask_ratio,
                                    images.device, generator)
        pred = self.decode(self.encode(images, keep), keep)
        per_token = (pred - self.target(images)).pow(2).mean(-1)             # [B, N]
        loss = (per_token * mask).sum() / mask.sum()
        return {"loss": loss, "loss_rec": loss.detach()}
