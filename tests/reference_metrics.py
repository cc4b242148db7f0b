"""Loop-form numpy references for ddkit.signals.metrics, written straight from docs/design.md §2.

Slow on purpose: one layer (and, where the definition is per token, one token) at a time,
float64 wherever the definition allows. Token entropy histograms the data in its own dtype
(float32 for float32 / half input), exactly as the paper's numpy.histogram call sees it.
Inputs: a stacked [L, B, C, H, W] array / tensor or a list of [B, C, H, W] ones.
"""

from __future__ import annotations

import numpy as np


def as_layers(feats) -> list[np.ndarray]:
    """Layers as numpy arrays; float64 stays float64, every other float becomes float32."""
    items = list(feats) if isinstance(feats, (list, tuple)) else [f for f in feats]
    out = []
    for f in items:
        if hasattr(f, "detach"):  # torch tensor: numpy has no bfloat16
            f = f.detach().cpu()
            f = f.double() if str(f.dtype) == "torch.float64" else f.float()
            f = f.numpy()
        f = np.asarray(f)
        out.append(f if f.dtype == np.float64 else f.astype(np.float32))
    return out


def channel_spectrum(feats) -> tuple[np.ndarray, np.ndarray]:
    """spectrum[l, k] = mean_{b,h,w} |fft(F[l], axis=C)[k] / C|; intensity = mean over k."""
    rows = []
    for f in as_layers(feats):
        C = f.shape[1]
        X = np.fft.fft(f.astype(np.float64), axis=1) / C
        rows.append(np.abs(X).mean(axis=(0, 2, 3)))
    spectrum = np.stack(rows)
    return spectrum, spectrum.mean(axis=1)


def _entropy_bits(counts: np.ndarray) -> float:
    n = counts.sum()
    if n == 0:
        return 0.0
    p = counts[counts > 0] / n
    return float(-(p * np.log2(p)).sum())


def token_entropy(feats, bins: int = 100, value_range="global") -> np.ndarray:
    """Per token np.histogram(vec, bins, range=(lo, hi)), entropy in bits, mean over tokens."""
    layers = as_layers(feats)
    if value_range == "global":
        lo = min(float(f.min()) for f in layers)
        hi = max(float(f.max()) for f in layers)
    out = []
    for f in layers:
        if value_range == "per_layer":
            lo, hi = float(f.min()), float(f.max())
        elif not isinstance(value_range, str):
            lo, hi = map(float, value_range)
        B, C, H, W = f.shape
        total = 0.0
        for b in range(B):
            for h in range(H):
                for w in range(W):
                    counts, _ = np.histogram(f[b, :, h, w], bins=bins, range=(lo, hi))
                    total += _entropy_bits(counts)
        out.append(total / (B * H * W))
    return np.array(out)


def mean_abs(feats) -> np.ndarray:
    """mean |F[l]| over (b, c, h, w) per layer."""
    return np.array([np.abs(f.astype(np.float64)).mean() for f in as_layers(feats)])


def spatial_log_amplitude(feats) -> np.ndarray:
    """ΔLogAmp: log(|fft2| + 1e-6) per (b, c), roll by (H//2, W//2), mean, diagonal, minus first."""
    rows = []
    for f in as_layers(feats):
        H, W = f.shape[2:]
        amp = np.abs(np.fft.fft2(f.astype(np.float64), axes=(2, 3)))
        logamp = np.log(amp + 1e-6).mean(axis=(0, 1))
        logamp = np.roll(logamp, (H // 2, W // 2), axis=(0, 1))
        diag = np.array([logamp[i, i] for i in range(H // 2, H)])
        rows.append(diag - diag[0])
    return np.stack(rows)


def _tokens(f: np.ndarray) -> np.ndarray:
    """[B, C, H, W] → [B*H*W, C] float64, rows are tokens."""
    return f.astype(np.float64).transpose(0, 2, 3, 1).reshape(-1, f.shape[1])


def effective_rank(feats) -> np.ndarray:
    """exp(entropy of σ / Σσ), σ = singular values of the uncentred token × channel matrix."""
    out = []
    for f in as_layers(feats):
        s = np.linalg.svd(_tokens(f), compute_uv=False)
        p = s / s.sum()
        p = p[p > 0]
        out.append(np.exp(-(p * np.log(p)).sum()))
    return np.array(out)


def _centred_energies(f) -> np.ndarray:
    """Squared singular values of the column-centred token × channel matrix, largest first."""
    m = _tokens(f)
    return np.linalg.svd(m - m.mean(axis=0), compute_uv=False) ** 2


def pca_dims(feats, energy: float = 0.9) -> np.ndarray:
    """Smallest k whose top-k principal components hold `energy` of the centred matrix's energy."""
    out = []
    for f in as_layers(feats):
        lam = _centred_energies(f)
        share = np.cumsum(lam) / lam.sum()
        k = 1
        while share[k - 1] < energy:
            k += 1
        out.append(k)
    return np.array(out)


def pca_dims_fractional(feats, energy: float = 0.9) -> np.ndarray:
    """The same k, less the part of the k-th component's share not needed to reach `energy`."""
    out = []
    for f in as_layers(feats):
        lam = _centred_energies(f)
        share = lam / lam.sum()
        reached, k = 0.0, 0
        while reached + share[k] < energy:
            reached += share[k]
            k += 1
        out.append(k + (energy - reached) / share[k])
    return np.array(out)


def channel_energy_concentration(feats, levels=(0.5, 0.9)) -> np.ndarray:
    """Per token: fewest fft bins (largest first) holding each level of |fft|² energy, / C."""
    rows = []
    for f in as_layers(feats):
        B, C, H, W = f.shape
        sums = np.zeros(len(levels))
        for b in range(B):
            for h in range(H):
                for w in range(W):
                    power = np.abs(np.fft.fft(f[b, :, h, w].astype(np.float64))) ** 2
                    cum = np.cumsum(np.sort(power)[::-1])
                    for i, level in enumerate(levels):
                        n = 1
                        while cum[n - 1] < level * cum[-1]:
                            n += 1
                        sums[i] += n / C
        rows.append(sums / (B * H * W))
    return np.stack(rows)


def linear_cka(feats_a, feats_b) -> np.ndarray:
    """||Yᵀ X||_F² / (||Xᵀ X||_F ||Yᵀ Y||_F) for centred token × channel matrices."""
    la, lb = as_layers(feats_a), as_layers(feats_b)
    out = np.zeros((len(la), len(lb)))
    for i, fa in enumerate(la):
        x = _tokens(fa)
        x = x - x.mean(axis=0)
        for j, fb in enumerate(lb):
            y = _tokens(fb)
            y = y - y.mean(axis=0)
            out[i, j] = np.linalg.norm(y.T @ x) ** 2 / (
                np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))
    return out
