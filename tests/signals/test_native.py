"""ddkit.signals.native: the C histogram kernel of token_entropy against numpy, value by value, and the
torch path it replaces (still used on CUDA, for float64 and without a C compiler)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from ddkit.signals import metrics as M
from ddkit.signals import native
from tests import reference_metrics as ref
from tests.signals.test_metrics import SHAPES, TOL_BITS, close, make_feats

needs_kernel = pytest.mark.skipif(not native.available(), reason="no C compiler for ddkit.signals.native")


@pytest.fixture(params=["native", "torch"])
def path(request, monkeypatch):
    """Run a test on the C kernel and on the torch passes (DDKIT_NATIVE=0)."""
    if request.param == "native" and not native.available():
        pytest.skip("no C compiler for ddkit.signals.native")
    monkeypatch.setenv(native.ENV, "1" if request.param == "native" else "0")
    return request.param


def _entropy_bits(counts: np.ndarray) -> float:
    n = counts.sum()
    p = counts[counts > 0] / max(n, 1)
    return float(-(p * np.log2(p)).sum())


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("value_range", ["global", "per_layer", (-1.3, 2.2)])
def test_both_paths_match_numpy(path, shape, value_range):
    f = make_feats(shape)
    close(M.token_entropy(f, value_range=value_range),
          ref.token_entropy(f, value_range=value_range), TOL_BITS)


@pytest.mark.parametrize("bins", [1, 2, 7, 257])
def test_both_paths_match_numpy_for_any_bin_count(path, bins):
    f = make_feats(SHAPES[0])
    close(M.token_entropy(f, bins=bins), ref.token_entropy(f, bins=bins), TOL_BITS)


def test_both_paths_agree_on_strided_half_and_chunked_input(path):
    f = make_feats((2, 3, 24, 5, 5))
    whole = M.token_entropy(f)
    grids = [M.tokens_to_grid(layer.flatten(2).transpose(1, 2).contiguous()) for layer in f]
    torch.testing.assert_close(M.token_entropy(grids), whole, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(M.token_entropy(f, chunk_tokens=7), whole, rtol=1e-6, atol=1e-6)
    half = f.to(torch.bfloat16)
    close(M.token_entropy(half), ref.token_entropy(half), TOL_BITS)


def test_offset_data_near_every_edge(path):
    # a tiny range far from zero: most values lie within rounding distance of an edge
    f = 1000 + 0.05 * torch.rand(1, 2, 33, 3, 3, generator=torch.Generator().manual_seed(0))
    close(M.token_entropy(f), ref.token_entropy(f), TOL_BITS)


@needs_kernel
@pytest.mark.parametrize("perturb_ulps", [0, 3])
def test_kernel_bins_values_on_and_next_to_edges_like_numpy(perturb_ulps):
    """Two-value tokens straddling (or not) each edge: 1 bit when numpy puts the values in two
    bins, 0 when in one. Edges moved by a few ulps (another way of computing them) must be
    followed too: the kernel trusts the edges it is given, not its own grid."""
    rng = np.random.default_rng(0)
    cases = 0
    for _ in range(25):
        bins = int(rng.choice([1, 2, 3, 10, 100, 101]))
        lo = float(np.float32(rng.normal() * 10 ** rng.uniform(-3, 3)))
        hi = float(np.float32(lo + abs(rng.normal()) * 10 ** rng.uniform(-2, 3)))
        edges = np.histogram_bin_edges(np.zeros(1), bins=bins, range=(lo, hi)).astype(np.float32)
        for _ in range(perturb_ulps):  # inner edges only: the range stays [lo, hi]
            edges[1:-1] = np.nextafter(edges[1:-1], np.float32(np.inf))
        if not (np.diff(edges) > 0).all():
            continue
        up = np.nextafter(edges, np.float32(np.inf))
        down = np.nextafter(edges, np.float32(-np.inf))
        pairs = [*zip(down, edges), *zip(edges, up), *zip(down, up),
                 *zip(rng.uniform(lo, hi, 50).astype(np.float32), edges[rng.integers(0, bins, 50)])]
        edges_t = torch.from_numpy(edges)
        tol = native.edge_tolerance(edges_t)
        lut = M._c_log2_c(2, torch.device("cpu"))
        for a, b in pairs:
            token = np.array([a, b], dtype=np.float32)
            expected = _entropy_bits(np.histogram(token, bins=edges)[0])  # outside: dropped
            x = torch.from_numpy(token).view(1, 2, 1, 1)
            got = native.token_entropy_sum(x, edges_t, lut, tol)
            assert got == pytest.approx(expected, abs=1e-12), (bins, lo, hi, a, b, edges)
            cases += 1
    assert cases > 1000


@needs_kernel
@pytest.mark.parametrize("lo,hi,bins", [(0.0, 1e-39, 2), (-3e38, 3e38, 100), (1000.0, 1000.05, 100),
                                        (-1.0, 1.0, 1000)])
def test_kernel_extreme_ranges(lo, hi, bins):
    """Subnormal widths, a range whose width overflows float32, a narrow range far from zero,
    many bins: the float32 position goes wrong or coarse and the edges settle every bin."""
    edges = np.histogram_bin_edges(np.zeros(1), bins=bins, range=(lo, hi)).astype(np.float32)
    assert (np.diff(edges) > 0).all()
    rng = np.random.default_rng(1)
    values = np.concatenate([edges, np.nextafter(edges, np.float32(np.inf)),
                             np.nextafter(edges, np.float32(-np.inf)),
                             rng.uniform(lo, hi, 500).astype(np.float32)])
    edges_t = torch.from_numpy(edges)
    lut = M._c_log2_c(len(values), torch.device("cpu"))
    x = torch.from_numpy(values).view(1, -1, 1, 1)
    got = native.token_entropy_sum(x, edges_t, lut, native.edge_tolerance(edges_t))
    assert got == pytest.approx(_entropy_bits(np.histogram(values, bins=edges)[0]), abs=1e-12)


@needs_kernel
def test_kernel_drops_values_outside_the_edges_and_counts_empty_tokens_zero():
    edges = torch.tensor([0.0, 0.5, 1.0])
    lut = M._c_log2_c(6, torch.device("cpu"))
    tol = native.edge_tolerance(edges)
    token = torch.tensor([-5.0, 0.1, 0.2, 0.6, 0.9, 5.0]).view(1, 6, 1, 1)
    assert native.token_entropy_sum(token, edges, lut, tol) == pytest.approx(1.0)
    assert native.token_entropy_sum(token + 10, edges, lut, tol) == 0.0


@needs_kernel
def test_kernel_threads_split_images_and_agree():
    f = make_feats((1, 7, 48, 6, 6))[0]
    b = M._binning(float(f.min()), float(f.max()), 100, torch.float32, f.device)
    lut, tol = M._c_log2_c(48, f.device), native.edge_tolerance(b.edges)
    one = native.token_entropy_sum(f, b.edges, lut, tol, threads=1)
    for threads in (2, 3, 16):
        assert native.token_entropy_sum(f, b.edges, lut, tol, threads) == pytest.approx(one,
                                                                                       rel=1e-12)


@needs_kernel
def test_kernel_refuses_wrong_input():
    edges, lut = torch.tensor([0.0, 1.0]), M._c_log2_c(4, torch.device("cpu"))
    with pytest.raises(ValueError, match="float32"):
        native.token_entropy_sum(torch.zeros(1, 4, 1, 1, dtype=torch.float64), edges, lut, 0.0)
    with pytest.raises(ValueError, match="lut"):
        native.token_entropy_sum(torch.zeros(1, 8, 1, 1), edges, lut, 0.0)


def test_without_a_compiler_token_entropy_warns_once_and_uses_torch(monkeypatch, tmp_path):
    monkeypatch.setattr(native, "_lib", None)
    monkeypatch.setattr(native, "_failed", None)
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("DDKIT_DATA", str(tmp_path))  # no kernel built before
    monkeypatch.delenv(native.ENV, raising=False)
    f = make_feats(SHAPES[0])
    with pytest.warns(RuntimeWarning, match="torch path"):
        h = M.token_entropy(f)
    close(h, ref.token_entropy(f), TOL_BITS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning
        M.token_entropy(f)
    assert not native.available()


@needs_kernel
def test_kernel_is_built_once_per_source_into_the_cache(monkeypatch, tmp_path):
    monkeypatch.setattr(native, "_lib", None)
    monkeypatch.setattr(native, "_failed", None)
    monkeypatch.setenv("DDKIT_DATA", str(tmp_path))
    assert native.available()
    built = sorted((tmp_path / "kernels").glob("*.so"))
    assert len(built) == 1
    stamp = built[0].stat().st_mtime_ns
    monkeypatch.setattr(native, "_lib", None)
    assert native.available()
    assert built[0].stat().st_mtime_ns == stamp  # loaded, not rebuilt
    assert math.isfinite(native.edge_tolerance(torch.tensor([0.0, 1.0])))


# --------------------------------------------------------------------------- issue 26: the cache

PROBE = ("import warnings; warnings.simplefilter('error')\n"
         "from ddkit.signals import native\n"
         "print('available', native.available())\n")


def _probe(data_dir):
    """``native.available()`` in a fresh process with the kernel cache in ``data_dir``."""
    env = {**os.environ, "DDKIT_DATA": str(data_dir), native.ENV: "1"}
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          env=env, timeout=300, cwd=Path(__file__).resolve().parents[2])
    return done.returncode, done.stdout + done.stderr


def _cached(data_dir):
    (lib,) = (data_dir / "kernels").glob("*.so")
    return lib


@needs_kernel
def test_a_truncated_cached_kernel_is_rebuilt_not_loaded(tmp_path):
    assert _probe(tmp_path) == (0, "available True\n")
    lib = _cached(tmp_path)
    whole = lib.read_bytes()
    lib.write_bytes(whole[: len(whole) // 3])          # in place: the same file, cut short
    code, said = _probe(tmp_path)
    assert (code, said) == (0, "available True\n"), said  # no SIGBUS, no warning: rebuilt
    assert len(_cached(tmp_path).read_bytes()) == len(whole)


@needs_kernel
def test_a_cached_kernel_without_the_symbol_is_rebuilt(tmp_path):
    assert _probe(tmp_path) == (0, "available True\n")
    lib = _cached(tmp_path)
    source = tmp_path / "other.c"
    source.write_text("int ddkit_other(void) { return 1; }\n")
    built = subprocess.run([native._compiler(), "-shared", "-fPIC", str(source), "-o", str(lib)],
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stderr      # a valid ELF, without the kernel's symbol
    code, said = _probe(tmp_path)
    assert (code, said) == (0, "available True\n"), said
    assert b"ddkit_token_entropy_sum" in _cached(tmp_path).read_bytes()
