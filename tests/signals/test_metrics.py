"""ddkit.signals.metrics: batched metrics vs the loop-form numpy reference, hand-worked cases, bad input,
chunking and memory."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from ddkit.signals import metrics as M
from tests import reference_metrics as ref

ROOT = Path(__file__).resolve().parents[2]

SHAPES = [(3, 2, 17, 5, 5), (2, 4, 64, 7, 7), (1, 3, 32, 14, 14)]
TOL = 1e-5
TOL_BITS = 1e-4


def make_feats(shape, seed=0, dtype=torch.float32):
    """Gaussian features with a different scale and offset per layer (so the global range
    matters) and a couple of large channels."""
    g = torch.Generator().manual_seed(seed)
    L, B, C, H, W = shape
    f = torch.randn(shape, generator=g, dtype=torch.float64)  # [L, B, C, H, W]
    scale = torch.logspace(0, 1.5, L, dtype=torch.float64).view(L, 1, 1, 1, 1)
    offset = torch.randn(L, 1, 1, 1, 1, generator=g, dtype=torch.float64)
    f = f * scale + offset
    f[:, :, 0] *= 3
    return f.to(dtype)


def close(actual: torch.Tensor, expected: np.ndarray, tol: float = TOL) -> None:
    np.testing.assert_allclose(actual.detach().cpu().double().numpy(), expected,
                               rtol=tol, atol=tol)


# ----------------------------------------------------------------------------- parity


@pytest.fixture(params=SHAPES + ["list"], ids=lambda p: "list" if p == "list" else
                "x".join(map(str, p)))
def feats(request):
    if request.param == "list":  # layers of different C (allowed where no [L, C] output)
        return [make_feats((1, 2, c, 6, 6), seed=c)[0] * (i + 1) for i, c in
                enumerate((24, 9, 40))]
    return make_feats(request.param)


@pytest.mark.parametrize("value_range", ["global", "per_layer", (-1.3, 2.2)])
def test_token_entropy_matches_numpy(feats, value_range):
    close(M.token_entropy(feats, value_range=value_range),
          ref.token_entropy(feats, value_range=value_range), TOL_BITS)


@pytest.mark.parametrize("bins", [1, 2, 7, 257])
def test_token_entropy_bins_match_numpy(bins):
    f = make_feats(SHAPES[0])
    close(M.token_entropy(f, bins=bins), ref.token_entropy(f, bins=bins), TOL_BITS)


def test_channel_spectrum_matches_numpy(feats):
    if isinstance(feats, list):
        feats = [f[:, :24] for f in feats if f.shape[1] >= 24]  # spectrum needs one C
    spectrum, intensity = M.channel_spectrum(feats)
    r_spectrum, r_intensity = ref.channel_spectrum(feats)
    close(spectrum, r_spectrum)
    close(intensity, r_intensity)


def test_magnitudes_match_numpy(feats):
    close(M.activation_magnitude(feats), ref.mean_abs(feats))
    close(M.gradient_magnitude(feats), ref.mean_abs(feats))


def test_spatial_log_amplitude_matches_numpy(feats):
    close(M.spatial_log_amplitude(feats), ref.spatial_log_amplitude(feats))


def test_capacity_metrics_match_numpy(feats):
    close(M.effective_rank(feats), ref.effective_rank(feats))
    close(M.channel_energy_concentration(feats, levels=(0.5, 0.75, 0.9)),
          ref.channel_energy_concentration(feats, levels=(0.5, 0.75, 0.9)))
    for energy in (0.5, 0.9):
        dims = M.pca_dims(feats, energy=energy)
        assert dims.dtype == torch.int64
        np.testing.assert_array_equal(dims.numpy(), ref.pca_dims(feats, energy=energy))
        close(M.pca_dims(feats, energy=energy, fractional=True),
              ref.pca_dims_fractional(feats, energy=energy))


def test_linear_cka_matches_numpy(feats):
    other = [f[:, : max(1, f.shape[1] // 2)] ** 2 for f in feats][:2]  # fewer, narrower layers
    close(M.linear_cka(feats, other), ref.linear_cka(feats, other))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_are_computed_in_float32(dtype):
    f = make_feats(SHAPES[0], dtype=dtype)
    h = M.token_entropy(f)
    assert h.dtype == torch.float32
    close(h, ref.token_entropy(f), TOL_BITS)  # the reference sees the same float32 values
    close(M.channel_spectrum(f)[0], ref.channel_spectrum(f)[0])
    close(M.linear_cka(f, f), ref.linear_cka(f, f))


def test_float64_stays_float64():
    f = make_feats(SHAPES[0], dtype=torch.float64)
    assert M.token_entropy(f).dtype == torch.float64
    assert M.channel_spectrum(f)[0].dtype == torch.float64
    close(M.token_entropy(f), ref.token_entropy(f), TOL_BITS)
    close(M.spatial_log_amplitude(f), ref.spatial_log_amplitude(f), 1e-9)


# ----------------------------------------------------------------------------- exact binning


def _numpy_counts(x: torch.Tensor, bins: int, lo: float, hi: float) -> np.ndarray:
    return np.histogram(x.numpy(), bins=bins, range=(lo, hi))[0]


def _ddkit_counts(x: torch.Tensor, bins: int, lo: float, hi: float) -> np.ndarray:
    b = M._binning(lo, hi, bins, x.dtype, x.device)
    x = x[(x >= b.lo) & (x <= b.hi)]
    idx = M._bin_index(x.view(1, -1, 1, 1), b, bins, M._Scratch(x.device)).view(-1)
    return torch.bincount(idx.long(), minlength=bins).numpy()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_values_on_and_next_to_bin_edges_land_where_numpy_puts_them(dtype):
    rng = np.random.default_rng(1)
    npdt = np.float32 if dtype == torch.float32 else np.float64
    checked = {True: 0, False: 0}
    for _ in range(60):
        bins = int(rng.choice([2, 3, 10, 100, 101, 1000]))
        lo = float(npdt(rng.normal() * 10 ** rng.uniform(-3, 3)))
        hi = float(npdt(lo + abs(rng.normal()) * 10 ** rng.uniform(-4, 3)))
        try:
            edges = np.histogram_bin_edges(np.zeros(1, npdt), bins=bins, range=(lo, hi))
        except ValueError:  # numpy: too many bins for the range; ddkit must refuse too
            with pytest.raises(ValueError, match="bins"):
                M._binning(lo, hi, bins, dtype, torch.device("cpu"))
            continue
        edges = edges.astype(npdt)
        v = np.concatenate([edges, np.nextafter(edges, npdt(np.inf)),
                            np.nextafter(edges, npdt(-np.inf)), rng.uniform(lo, hi, 300)])
        x = torch.from_numpy(np.clip(v.astype(npdt), npdt(lo), npdt(hi)))
        for r in [(lo, hi), (lo + (hi - lo) * 0.1003, hi - (hi - lo) * 0.3)]:
            np.testing.assert_array_equal(_ddkit_counts(x, bins, *r), _numpy_counts(x, bins, *r))
        checked[M._binning(lo, hi, bins, dtype, torch.device("cpu")).fast] += 1
    assert checked[True] > 10  # the fast rule, and in float32 also the fallback
    assert checked[False] > 0 or dtype == torch.float64


def test_entropy_of_offset_data_uses_exact_fallback():
    # a tiny range far from zero: the position arithmetic is too coarse, binary search is used
    f = 1000 + 0.05 * torch.rand(1, 2, 33, 3, 3, generator=torch.Generator().manual_seed(0))
    lo, hi = float(f.min()), float(f.max())
    assert not M._binning(lo, hi, 100, torch.float32, f.device).fast
    close(M.token_entropy(f), ref.token_entropy(f), TOL_BITS)


def test_too_many_bins_for_the_range_is_refused_like_numpy():
    f = 1000 + 1e-4 * torch.rand(1, 1, 8, 2, 2, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError):
        np.histogram(f.numpy()[0, 0, :, 0, 0], bins=1000, range=(float(f.min()), float(f.max())))
    with pytest.raises(ValueError, match="bins"):
        M.token_entropy(f, bins=1000)


# ----------------------------------------------------------------------------- hand-worked


def test_constant_map_has_zero_entropy_and_only_dc():
    f = torch.full((2, 2, 8, 3, 3), 0.7)
    for value_range in ("global", "per_layer"):
        assert torch.equal(M.token_entropy(f, value_range=value_range), torch.zeros(2))
    spectrum, intensity = M.channel_spectrum(f)
    close(spectrum[:, 0], np.full(2, 0.7), 1e-6)
    assert spectrum[:, 1:].abs().max() < 1e-6
    close(intensity, np.full(2, 0.7 / 8), 1e-6)


def test_entropy_of_a_vector_filling_every_bin_once_is_log2_bins():
    for bins in (16, 100):
        vec = torch.arange(bins, dtype=torch.float32)  # value k falls in bin k
        f = vec.view(1, 1, bins, 1, 1).expand(1, 3, bins, 2, 2)
        assert M.token_entropy(f, bins=bins).item() == pytest.approx(math.log2(bins), abs=1e-6)
        # entropy is computed from counts: the same through chunks and a list
        h = M.token_entropy([f[0]], bins=bins, chunk_tokens=1)
        assert h.item() == pytest.approx(math.log2(bins), abs=1e-6)


def test_global_range_couples_layers_per_layer_does_not():
    f = make_feats((3, 2, 32, 4, 4))
    glob = M.token_entropy(f, value_range="global")
    per = M.token_entropy(f, value_range="per_layer")
    assert (glob[:-1] < per[:-1] - 0.1).all()  # small layers squeezed into few global bins
    one = f[1:2]
    assert torch.equal(M.token_entropy(one, value_range="global"),
                       M.token_entropy(one, value_range="per_layer"))
    # an explicit range equal to the global one is the global entropy
    lo, hi = float(f.min()), float(f.max())
    close(M.token_entropy(f, value_range=(lo, hi)), glob.numpy().astype(np.float64), 1e-6)


def test_explicit_range_drops_outside_values_and_empty_tokens_count_zero():
    vec = torch.tensor([-5.0, 0.1, 0.2, 0.6, 0.9, 5.0])
    f = vec.view(1, 1, 6, 1, 1)
    # inside (0, 1) with 2 bins: 0.1, 0.2 | 0.6, 0.9 -> 1 bit
    assert M.token_entropy(f, bins=2, value_range=(0.0, 1.0)).item() == pytest.approx(1.0)
    assert M.token_entropy(f, bins=2, value_range=(10.0, 11.0)).item() == 0.0


def test_channel_alternating_vector_sits_in_bin_c_over_2():
    C = 16
    vec = torch.tensor([(-1.0) ** c for c in range(C)])
    f = vec.view(1, 1, C, 1, 1).expand(1, 2, C, 3, 3)
    spectrum, _ = M.channel_spectrum(f)
    assert spectrum[0].argmax().item() == C // 2
    assert spectrum[0, C // 2].item() == pytest.approx(1.0, abs=1e-6)  # |X| / C = C / C
    assert spectrum[0].sum().item() == pytest.approx(1.0, abs=1e-5)
    close(M.channel_energy_concentration(f), np.full((1, 2), 1 / C), 1e-7)


def test_energy_concentration_of_pure_tones_and_zero_tokens():
    C = 12
    c = torch.arange(C, dtype=torch.float64)
    dc = torch.ones(C)
    cosine = torch.cos(2 * math.pi * 3 * c / C).float()  # energy in bins 3 and C-3
    zero = torch.zeros(C)
    noise = torch.randn(C, generator=torch.Generator().manual_seed(0))
    f = torch.stack([dc, cosine, zero, noise]).T.reshape(1, 1, C, 2, 2)  # 4 tokens
    per_token = [M.channel_energy_concentration(f[:, :, :, i // 2, i % 2, None, None],
                                                levels=(0.9,)).item() for i in range(4)]
    assert per_token[0] == pytest.approx(1 / C)
    assert per_token[1] == pytest.approx(2 / C)
    assert per_token[2] == pytest.approx(1 / C)  # documented choice: a zero token = one bin
    assert per_token[3] > 4 / C
    assert M.channel_energy_concentration(f, levels=(0.9,)).item() == \
        pytest.approx(sum(per_token) / 4)


def test_spatial_log_amplitude_peaks_at_the_highest_frequency():
    # odd grid: the checkerboard's energy sits next to Nyquist, the last diagonal entry
    H = 7
    hh, ww = torch.meshgrid(torch.arange(H), torch.arange(H), indexing="ij")
    board = ((-1.0) ** (hh + ww)).expand(2, 3, H, H)  # [B, C, H, W]
    d = M.spatial_log_amplitude([board])[0]
    assert d.shape == (H - H // 2,)
    assert d[0] == 0 and d.argmax().item() == H - H // 2 - 1 and d[-1] > 1
    # even grid: the diagonal stops one below Nyquist; a wave at that frequency peaks last
    H = 8
    hh, ww = torch.meshgrid(torch.arange(H), torch.arange(H), indexing="ij")
    wave = torch.cos(2 * math.pi * (H // 2 - 1) * (hh + ww) / H).expand(1, 2, H, H)
    d = M.spatial_log_amplitude(wave.unsqueeze(0).float())[0]
    assert d.argmax().item() == H - H // 2 - 1 and d[-1] > 10
    # near-zero amplitudes meet the 1e-6 of the log: compare with the reference in float64
    wave64 = wave.unsqueeze(0).double()
    close(M.spatial_log_amplitude(wave64), ref.spatial_log_amplitude(wave64), 1e-8)


def _layer_from_tokens(m: torch.Tensor, B: int, H: int, W: int) -> torch.Tensor:
    """[B*H*W, C] token matrix → [B, C, H, W] layer."""
    return m.reshape(B, H, W, -1).permute(0, 3, 1, 2).contiguous()


def test_effective_rank_extremes():
    g = torch.Generator().manual_seed(0)
    B, H, W, C = 2, 4, 4, 8
    u, v = torch.randn(B * H * W, 1, generator=g), torch.randn(1, C, generator=g)
    rank1 = _layer_from_tokens(u @ v, B, H, W)
    q, _ = torch.linalg.qr(torch.randn(B * H * W, C, generator=g, dtype=torch.float64))
    ortho = _layer_from_tokens(q, B, H, W).float()  # orthonormal columns: all σ = 1
    er = M.effective_rank([rank1, ortho, torch.zeros_like(ortho)])
    assert er[0].item() == pytest.approx(1.0, abs=1e-3)
    assert er[1].item() == pytest.approx(C, abs=1e-4)
    assert er[2].item() == 0.0  # documented: an all-zero layer


def test_pca_dims_of_a_k_dim_subspace():
    g = torch.Generator().manual_seed(0)
    B, H, W, C, k = 2, 5, 5, 16, 3
    m = torch.randn(B * H * W, k, generator=g) @ torch.randn(k, C, generator=g) + 5.0
    f = _layer_from_tokens(m, B, H, W)[None]
    assert M.pca_dims(f, energy=0.9).item() <= k
    assert M.pca_dims(f, energy=1.0).item() == k  # the offset is removed by centring
    assert M.pca_dims(torch.ones(1, 2, C, 3, 3)).item() == 0  # no variance
    assert M.pca_dims(f, energy=1.0, fractional=True).item() == pytest.approx(k)
    assert M.pca_dims(torch.ones(1, 2, C, 3, 3), fractional=True).item() == 0


def test_fractional_pca_dims_of_an_isotropic_layer_is_energy_times_width():
    """Equal variance on every channel (orthogonal columns of equal norm): energy × C exactly,
    where the integer count can only say ceil(energy × C)."""
    B, H, W, C = 2, 4, 4, 16
    m = torch.randn(B * H * W, C, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    u = torch.linalg.svd(m - m.mean(0), full_matrices=False)[0]   # centred orthonormal columns
    m = 3.0 * u                                                    # every σ² = 9
    f = _layer_from_tokens(m.float(), B, H, W)[None]
    for energy in (0.5, 0.9, 0.95):
        assert M.pca_dims(f, energy=energy, fractional=True).item() == pytest.approx(
            energy * C, abs=1e-3)
        assert M.pca_dims(f, energy=energy).item() == math.ceil(energy * C - 1e-9)


def test_cka_self_one_and_invariances():
    f = make_feats((3, 2, 12, 4, 4))
    cka = M.linear_cka(f, f)
    close(torch.diagonal(cka), np.ones(3), 1e-6)
    assert torch.allclose(cka, cka.T, atol=1e-6)
    q, _ = torch.linalg.qr(torch.randn(12, 12, generator=torch.Generator().manual_seed(1)))
    rotated = torch.einsum("dc,lbchw->lbdhw", q, f) * 7.5  # orthogonal map of C, then scale
    close(M.linear_cka(f, rotated), cka.double().numpy(), 1e-5)
    assert torch.isnan(M.linear_cka(f, torch.ones(1, 2, 3, 4, 4))).all()  # no variance: NaN


def test_tokens_to_grid_and_frequencies():
    B, C, side = 2, 5, 3
    grid = torch.randn(B, C, side, side)
    tokens = grid.flatten(2).transpose(1, 2)  # [B, N, C], row-major
    with_cls = torch.cat([torch.zeros(B, 2, C), tokens], 1)
    assert torch.equal(M.tokens_to_grid(tokens), grid)
    assert torch.equal(M.tokens_to_grid(with_cls, num_prefix_tokens=2), grid)
    for C in (1, 7, 384):
        np.testing.assert_allclose(M.spectrum_frequencies(C).numpy(),
                                   np.fft.fftfreq(C)[: C // 2], atol=1e-7)


# ----------------------------------------------------------------------------- chunks, lists


CHUNKED = {
    "token_entropy": lambda f, **kw: M.token_entropy(f, **kw),
    "token_entropy_per_layer": lambda f, **kw: M.token_entropy(f, value_range="per_layer", **kw),
    "token_entropy_explicit": lambda f, **kw: M.token_entropy(f, value_range=(-2, 3), **kw),
    "channel_spectrum": lambda f, **kw: torch.column_stack(M.channel_spectrum(f, **kw)),
    "spatial_log_amplitude": lambda f, **kw: M.spatial_log_amplitude(f, **kw),
    "effective_rank": lambda f, **kw: M.effective_rank(f, **kw),
    "pca_dims": lambda f, **kw: M.pca_dims(f, **kw),
    "channel_energy_concentration": lambda f, **kw: M.channel_energy_concentration(f, **kw),
    "activation_magnitude": lambda f, **kw: M.activation_magnitude(f, **kw),
}


@pytest.mark.parametrize("name", CHUNKED)
def test_list_and_chunks_equal_stacked(name):
    fn = CHUNKED[name]
    f = make_feats((3, 5, 24, 6, 6))
    whole = fn(f)
    for other in (fn(list(f)), fn(f, chunk_tokens=1), fn(tuple(f), chunk_tokens=80)):
        torch.testing.assert_close(other, whole, rtol=1e-6, atol=1e-6)


def test_strided_inputs_equal_contiguous():
    """tokens_to_grid returns a strided view (channels last in memory): same numbers."""
    f = make_feats((2, 3, 16, 5, 5))
    tokens = [layer.flatten(2).transpose(1, 2).contiguous() for layer in f]  # [B, N, C]
    grids = [M.tokens_to_grid(t) for t in tokens]
    assert not grids[0].is_contiguous()
    for name, fn in CHUNKED.items():
        torch.testing.assert_close(fn(grids), fn(f), rtol=1e-6, atol=1e-6, msg=name)
    torch.testing.assert_close(M.linear_cka(grids, f), M.linear_cka(f, f))


MEMORY_SCRIPT = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, {root!r})
    from ddkit.signals import metrics as M
    torch.set_num_threads(1)

    def rss_kib(field):
        for line in open("/proc/self/status"):
            if line.startswith(field):
                return int(line.split()[1])

    L, shape = 6, (16, 64, 64, 64)  # 6 layers of 16 MiB
    layer_kib = torch.Size(shape).numel() * 4 // 1024
    g = torch.Generator().manual_seed(0)
    feats = [torch.randn(shape, generator=g) * (i + 1) for i in range(L)]
    calls = {{
        "token_entropy": lambda f: M.token_entropy(f),
        "token_entropy_per_layer": lambda f: M.token_entropy(f, value_range="per_layer"),
        "channel_spectrum": lambda f: M.channel_spectrum(f),
        "activation_magnitude": lambda f: M.activation_magnitude(f),
        "spatial_log_amplitude": lambda f: M.spatial_log_amplitude(f),
        "effective_rank": lambda f: M.effective_rank(f),
        "pca_dims": lambda f: M.pca_dims(f),
        "channel_energy_concentration": lambda f: M.channel_energy_concentration(f),
        "linear_cka": lambda f: M.linear_cka(f[:3], f[3:]),
    }}
    for name, fn in calls.items():
        fn([f[:1, :, :8, :8] for f in feats])  # warm up kernels, FFT plans, thread pools
        before = rss_kib("VmRSS:")
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset the peak-RSS mark
        fn(feats)
        print(name, (rss_kib("VmHWM:") - before) / layer_kib)
""")


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_peak_memory_is_about_two_layers_not_all_layers():
    """Peak extra RSS of each metric on 6 layers of 16 MiB, in layers: stacking would cost 6."""
    # fixed glibc thresholds: every large block is mmapped and returned on free, so the
    # resident set follows live memory instead of a heap that keeps freed blocks
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    out = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT.format(root=str(ROOT))], env=env,
                         capture_output=True, text=True, timeout=300, check=True).stdout
    peaks = {name: float(v) for name, v in (line.split() for line in out.strip().splitlines())}
    assert len(peaks) == 9, out
    over = {name: v for name, v in peaks.items() if v > 2.25}
    assert not over, f"peak extra memory in layers: {peaks}"


# ----------------------------------------------------------------------------- bad input


GOOD = torch.randn(2, 2, 4, 3, 3)


@pytest.mark.parametrize("bad, pattern", [
    (torch.randn(2, 4, 3, 3), r"feats: .*\(2, 4, 3, 3\)"),
    ([torch.randn(4, 3, 3)], r"feats\[0\].*\(4, 3, 3\)"),
    ([], r"feats: empty"),
    (torch.randn(2, 0, 4, 3, 3), r"feats: .*\(2, 0, 4, 3, 3\)"),
    ([torch.randn(2, 4, 3, 3), torch.randn(2, 0, 3, 3)], r"feats\[1\].*\(2, 0, 3, 3\)"),
    (GOOD.clone().index_put_((torch.tensor(1),), torch.tensor(float("nan"))),
     r"feats: layer 1 .*NaN"),
    (GOOD.clone().index_put_((torch.tensor(0),), torch.tensor(float("inf"))),
     r"feats: layer 0 .*inf"),
    (GOOD.int(), r"feats: .*floating point"),
    ("features", r"feats: .*str"),
    ([torch.randn(2, 4, 3, 3), "x"], r"feats\[1\]"),
])
def test_bad_feats_raise_naming_the_argument(bad, pattern):
    for fn in (M.token_entropy, M.channel_spectrum, M.activation_magnitude,
               M.spatial_log_amplitude, M.effective_rank, M.pca_dims,
               M.channel_energy_concentration):
        with pytest.raises(ValueError, match=pattern):
            fn(bad)
    with pytest.raises(ValueError, match=pattern.replace("feats", "grads", 1)):
        M.gradient_magnitude(bad)
    with pytest.raises(ValueError, match=pattern.replace("feats", "feats_a", 1)):
        M.linear_cka(bad, GOOD)
    with pytest.raises(ValueError, match=pattern.replace("feats", "feats_b", 1)):
        M.linear_cka(GOOD, bad)


def test_layers_that_must_agree():
    mixed_c = [torch.randn(2, 4, 3, 3), torch.randn(2, 5, 3, 3)]
    with pytest.raises(ValueError, match=r"feats: layer 1 .*\(2, 5, 3, 3\).*C"):
        M.channel_spectrum(mixed_c)
    M.token_entropy(mixed_c), M.effective_rank(mixed_c)  # C may differ here
    mixed_hw = [torch.randn(2, 4, 3, 3), torch.randn(2, 4, 4, 4)]
    with pytest.raises(ValueError, match=r"feats: layer 1 .*H, W"):
        M.spatial_log_amplitude(mixed_hw)
    with pytest.raises(ValueError, match=r"feats: .*square.*\(2, 4, 3, 5\)"):
        M.spatial_log_amplitude([torch.randn(2, 4, 3, 5)])
    with pytest.raises(ValueError, match=r"feats_a: layer 1 .*B"):
        M.linear_cka([torch.randn(2, 4, 3, 3), torch.randn(3, 4, 3, 3)], GOOD)
    with pytest.raises(ValueError, match=r"feats_a, feats_b: .*\(2, 4, 3, 3\).*\(2, 4, 3, 2\)"):
        M.linear_cka(GOOD, torch.randn(1, 2, 4, 3, 2))
    M.linear_cka(GOOD, torch.randn(1, 2, 7, 3, 3))  # channels may differ


@pytest.mark.parametrize("call, pattern", [
    (lambda: M.token_entropy(GOOD, bins=0), "bins"),
    (lambda: M.token_entropy(GOOD, bins=2.5), "bins"),
    (lambda: M.token_entropy(GOOD, bins=True), "bins"),
    (lambda: M.token_entropy(GOOD, value_range="layer"), "value_range"),
    (lambda: M.token_entropy(GOOD, value_range=(1.0, 0.0)), "value_range"),
    (lambda: M.token_entropy(GOOD, value_range=(0.0, float("inf"))), "value_range"),
    (lambda: M.token_entropy(GOOD, value_range=(0.0,)), "value_range"),
    (lambda: M.token_entropy(GOOD, value_range=("a", "b")), "value_range"),
    (lambda: M.pca_dims(GOOD, energy=0.0), "energy"),
    (lambda: M.pca_dims(GOOD, energy=1.5), "energy"),
    (lambda: M.channel_energy_concentration(GOOD, levels=()), "levels"),
    (lambda: M.channel_energy_concentration(GOOD, levels=(0.5, 1.2)), "levels"),
    (lambda: M.channel_spectrum(GOOD, chunk_tokens=0), "chunk_tokens"),
    (lambda: M.tokens_to_grid(torch.randn(2, 10, 4)), r"x: a token count that is not a grid"),
    (lambda: M.tokens_to_grid(torch.randn(2, 10, 4), num_prefix_tokens=2),
     r"x: a token count that is not a grid.*\(2, 10, 4\)"),
    (lambda: M.tokens_to_grid(torch.randn(2, 10, 4), num_prefix_tokens=10), "num_prefix_tokens"),
    (lambda: M.tokens_to_grid(torch.randn(10, 4)), r"x: .*\(10, 4\)"),
    (lambda: M.spectrum_frequencies(0), "C"),
])
def test_bad_arguments_raise_naming_the_argument(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


# ----------------------------------------------------------------------------- float32 edges


def _entropy_from_counts(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def test_float32_range_gives_numpys_float32_edges():
    """The official analysis hands numpy.histogram a float32 range: under numpy >= 2 its edges
    are float32 (a float32 linspace). range_dtype=float32 reproduces them; the default (Python
    floats: a float64 linspace rounded to float32) keeps numpy's other answer. Values placed on
    the edges where the two disagree land in different bins, so the two entropies differ."""
    rng = np.random.default_rng(7)
    tokens, found = [], 0
    while len(tokens) < 24:
        v = (rng.standard_normal(192) * 10 ** rng.uniform(-2, 2)).astype(np.float32)
        lo, hi = v.min(), v.max()
        e32 = np.histogram_bin_edges(v, 100, range=(np.float32(lo), np.float32(hi)))
        e64 = np.histogram_bin_edges(v, 100, range=(float(lo), float(hi)))
        assert e32.dtype == e64.dtype == np.float32
        differ = np.flatnonzero(e32[1:-1] != e64[1:-1]) + 1
        if len(differ):
            k = differ[0]
            v[1:4] = min(e32[k], e64[k])       # inside the range: one bin apart in the two
            found += 1
        tokens.append(v)
    assert found > 5
    f = torch.from_numpy(np.stack(tokens)).T.reshape(1, 1, 192, 4, 6)     # [L, B, C, H, W]
    vecs = f[0, 0].permute(1, 2, 0).reshape(-1, 192).numpy()               # tokens in (h, w) order
    per_token = {}
    for range_dtype, cast in ((torch.float32, np.float32), (torch.float64, float)):
        expected = [_entropy_from_counts(np.histogram(
            t, 100, range=(cast(t.min()), cast(t.max())))[0]) for t in vecs]
        per_token[cast] = [M.token_entropy(f[..., i // 6:i // 6 + 1, i % 6:i % 6 + 1],
                                           value_range="per_layer",
                                           range_dtype=range_dtype).item() for i in range(24)]
        np.testing.assert_allclose(per_token[cast], expected, rtol=0, atol=1e-6)
    differ = sum(a != b for a, b in zip(per_token[np.float32], per_token[float]))
    assert differ >= 5     # the edge values moved bins (same entropy only where both bins'
                           # other counts are equal, e.g. both empty)
    f32 = M.token_entropy(f, value_range="per_layer", range_dtype=torch.float32)
    f64 = M.token_entropy(f, value_range="per_layer")
    lo, hi = float(f.min()), float(f.max())
    for dtype in (torch.float32, torch.float64):
        edges = M._binning(lo, hi, 100, torch.float32, f.device, dtype).edges.numpy()
        cast = np.float32 if dtype == torch.float32 else float
        np.testing.assert_array_equal(edges, np.histogram_bin_edges(
            f.numpy().ravel(), 100, range=(cast(lo), cast(hi))))
    assert f32.dtype == f64.dtype == torch.float32


def test_range_dtype_is_checked():
    with pytest.raises(ValueError, match="range_dtype"):
        M.token_entropy(torch.randn(1, 1, 8, 2, 2), range_dtype=torch.float16)
