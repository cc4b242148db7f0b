"""runs/store: the names the store gives files and folders."""
from __future__ import annotations

from ddkit.runs import store


def test_slug_is_a_safe_file_name_part():
    assert store.slug("SpectralKD-First+Last") == "spectralkd_first_last"
    assert store.slug(" ViT-B/16  (MAE) ") == "vit_b_16_mae"
    assert store.slug("vit_tiny_patch16_224_vs_deit") == "vit_tiny_patch16_224_vs_deit"
