"""The shared channel basis of a set of tokens, as the encoding-mismatch follow-up (arXiv
2511.15572) builds it: the eigenvectors of the **uncentred** second moment of every token of
every image, ``M = (1 / total tokens) · Σ_i X_iᵀ X_i`` (``X_i``: image i's ``[tokens, C]``),
by descending eigenvalue.

Used by the follow-up's dimension (``ddkit.signals.mismatch``) and by the rank-k target of the
controlled-dimension design (``ddkit.core.losses.RankTarget``), so that both read the teacher in
one basis. Written here because no library fits a shared uncentred basis with stable signs;
``torch.linalg.eigh`` does the work.
"""
from __future__ import annotations

import torch


def tokens_of(f: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W]`` feature maps (or ``[B, N, C]`` tokens) -> ``[B, N, C]`` tokens."""
    if f.dim() == 4:
        return f.flatten(2).transpose(1, 2)
    if f.dim() == 3:
        return f
    raise ValueError(f"expected [B, C, H, W] feature maps or [B, N, C] tokens, got {tuple(f.shape)}")


@torch.no_grad()
def shared_basis(f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(eigenvalues [C], basis [C, C])`` of the uncentred second moment of every token of ``f``
    (``[B, C, H, W]`` or ``[B, N, C]``), in float64, eigenvalues descending, column j the j-th
    direction; each direction's sign makes its largest loading positive, so the basis does not
    depend on the eigensolver's signs."""
    tokens = tokens_of(f).reshape(-1, tokens_of(f).shape[-1]).double()     # [B·N, C]
    moment = tokens.T @ tokens / len(tokens)                               # [C, C]
    values, vectors = torch.linalg.eigh(moment)                            # ascending
    values, vectors = values.flip(0), vectors.flip(1)
    signs = vectors.gather(0, vectors.abs().argmax(0, keepdim=True)).sign()
    signs[signs == 0] = 1
    return values.clamp_min(0), vectors * signs
