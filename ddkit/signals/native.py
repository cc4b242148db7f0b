"""A C kernel for the one loop torch has no operator for: a histogram per token.

``token_entropy`` (ddkit.signals.metrics) needs, for every token, the counts of its C values in equal
bins. In torch that is six elementwise passes and a scatter over every value; this kernel does
it in one pass per value (bin, count, then the entropy of each token's counts), at about a
third of the time on a CPU. It is compiled with the system's C compiler on first use into
``$DDKIT_DATA/kernels`` (default ``~/.cache/ddkit/kernels``), keyed by a digest of its source and
flags, and loaded with ctypes (no Python headers, no torch headers). The build records the
library's sha256 beside it (``.sha256``); a cached library whose bytes no longer have that
digest (cut short, replaced, built by an older ddkit) or that lacks the kernel's symbol is built
again instead of loaded, since loading a truncated library kills the process (SIGBUS). Without a
compiler, or with ``DDKIT_NATIVE=0``, ``available()`` is False and the caller keeps its torch
path.

Exactness: the bin of a value is numpy.histogram's (``edges[k] <= v < edges[k+1]``, the last
bin closed), whatever the edges are. The kernel computes the value's position on the equal-width
grid in float32 (16 values per AVX-512 instruction) and trusts its integer part when the position
is farther than ``tol`` bins from an integer, ``tol`` (``edge_tolerance``) bounding the edges'
distance from that grid plus the rounding of the position: then no edge can lie between. A row
of values with any position within ``tol`` of an integer is settled by comparing each value with
the edges themselves.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import subprocess
import sys
import sysconfig
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from ddkit.core import data

ENV = "DDKIT_NATIVE"  # "0" turns the kernel off (the torch path is used)

SOURCE = r"""
#include <stdint.h>
#include <math.h>
#include <string.h>

#ifdef DDKIT_CLONES
#define CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CLONES
#endif

/* Bin of every value of one channel row [T]: k = integer part of the position (bins for values
   outside [lo, hi], a slot that is not counted). Returns 1 when some position is within tol of
   an integer (the row's bins must then be settled against the edges). float32 arithmetic: tol
   covers its rounding. */
static inline int bin_row(const float *restrict row, int64_t T, float lo, float hi,
                          float scale, float tol, int32_t bins, int32_t *restrict k_out) {
    int near = 0;
    const float top = (float)bins;
    for (int64_t t = 0; t < T; t++) {
        float v = row[t];
        float pos = (v - lo) * scale;
        pos = pos > 0.0f ? pos : 0.0f;  /* outside values: any position in range will do */
        pos = pos < top ? pos : top;
        int32_t k = (int32_t)pos;
        float frac = pos - (float)k;
        near |= (frac < tol) | (frac > 1.0f - tol);
        k = k < bins - 1 ? k : bins - 1;
        k_out[t] = ((v < lo) | (v > hi)) ? bins : k;
    }
    return near;
}

/* numpy's rule for every value of a row: walk from the estimate to edges[k] <= v < edges[k+1]
   (the last bin closed). */
static void settle_row(const float *restrict row, int64_t T, int32_t bins,
                       const float *restrict edges, int32_t *restrict k_out) {
    for (int64_t t = 0; t < T; t++) {
        int32_t k = k_out[t];
        if (k == bins) continue;
        float v = row[t];
        while (k > 0 && v < edges[k]) k--;
        while (k < bins - 1 && v >= edges[k + 1]) k++;
        k_out[t] = k;
    }
}

/* Sum over the tokens of n images [n, C, T] (contiguous) of each token's histogram entropy in
   bits, with bins given by edges[0..bins] (float32). lut[c] = c log2 c for c = 0..C.
   counts: scratch of T * (bins + 1) int32; k_row: scratch of T int32. A token whose values all
   fall outside [edges[0], edges[bins]] counts 0. */
CLONES
double ddkit_token_entropy_sum(const float *restrict x, int64_t n, int64_t C, int64_t T,
                               const float *restrict edges, int32_t bins, double scale,
                               double tol, const double *restrict lut, int32_t *restrict counts,
                               int32_t *restrict k_row) {
    const int64_t slots = (int64_t)bins + 1;
    const float lo = edges[0], hi = edges[bins];
    const float scale32 = (float)scale, tol32 = (float)tol;
    double total = 0.0;
    for (int64_t b = 0; b < n; b++) {
        memset(counts, 0, sizeof(int32_t) * (size_t)(T * slots));
        const float *image = x + b * C * T;
        for (int64_t c = 0; c < C; c++) {
            const float *row = image + c * T;
            if (bin_row(row, T, lo, hi, scale32, tol32, bins, k_row))
                settle_row(row, T, bins, edges, k_row);
            int64_t t = 0;  /* four tokens a step: independent increments the CPU overlaps */
            int32_t *c0 = counts;
            for (; t + 4 <= T; t += 4, c0 += 4 * slots) {
                int32_t k0 = k_row[t], k1 = k_row[t + 1], k2 = k_row[t + 2], k3 = k_row[t + 3];
                c0[k0]++; c0[slots + k1]++; c0[2 * slots + k2]++; c0[3 * slots + k3]++;
            }
            for (; t < T; t++) counts[t * slots + k_row[t]]++;
        }
        for (int64_t t = 0; t < T; t++) {
            const int32_t *ct = counts + t * slots;
            double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
            int64_t kept = 0;
            int32_t k = 0;
            for (; k + 4 <= bins; k += 4) {  /* four sums: no chain of dependent adds */
                s0 += lut[ct[k]]; s1 += lut[ct[k + 1]]; s2 += lut[ct[k + 2]]; s3 += lut[ct[k + 3]];
                kept += ct[k] + ct[k + 1] + ct[k + 2] + ct[k + 3];
            }
            for (; k < bins; k++) { s0 += lut[ct[k]]; kept += ct[k]; }
            if (kept > 0)
                total += log2((double)kept) - ((s0 + s1) + (s2 + s3)) / (double)kept;
        }
    }
    return total;
}
"""

# -fno-trapping-math lets the compiler vectorise the compares (no code here reads FP flags);
# -ffp-contract=off keeps each multiply and add rounded as written
_FLAGS = ["-O3", "-shared", "-fPIC", "-ffp-contract=off", "-fno-trapping-math", "-std=c99"]
_lib: ctypes.CDLL | None = None
_failed: str | None = None


def kernel_dir() -> Path:
    """Where compiled kernels are kept: ``$DDKIT_DATA/kernels`` or ``~/.cache/ddkit/kernels``."""
    return data.default_data_dir() / "kernels"


def _compiler() -> str:
    return os.environ.get("CC") or (sysconfig.get_config_var("CC") or "cc").split()[0]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _record(path: Path) -> Path:
    """Where the digest of the library ``path`` is recorded when it is built."""
    return path.with_suffix(".sha256")


def _compile(path: Path, flags: list[str]) -> str | None:
    """Compile the kernel into ``path`` (its digest recorded first, then the library renamed into
    place: concurrent builders each leave whole files); the compiler's error, or None."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        src, out, digest = Path(tmp) / "kernel.c", Path(tmp) / "kernel.so", Path(tmp) / "sha256"
        src.write_text(SOURCE)
        done = subprocess.run([_compiler(), *flags, str(src), "-o", str(out), "-lm"],
                              capture_output=True, text=True)
        if done.returncode != 0:
            return done.stderr.strip()[-400:]
        digest.write_text(_digest(out) + "\n")
        os.replace(digest, _record(path))
        os.replace(out, path)  # atomic: a library is never rewritten in place
    return None


def _load(path: Path) -> ctypes.CDLL | None:
    """The library at ``path`` with the kernel's signature set, or None when it is missing, its
    bytes do not have the digest recorded when it was built, or it lacks the kernel."""
    record = _record(path)
    if not path.is_file() or not record.is_file():
        return None
    if _digest(path) != record.read_text().strip():
        return None                   # checked before dlopen: a cut library would SIGBUS
    try:
        lib = ctypes.CDLL(str(path))
        fn = lib.ddkit_token_entropy_sum
    except (OSError, AttributeError):
        return None
    p, i64, i32, f64 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32, ctypes.c_double
    fn.argtypes = [p, i64, i64, i64, p, i32, f64, f64, p, p, p]
    fn.restype = f64
    return lib


def _build() -> ctypes.CDLL:
    """Load the cached kernel library, or compile it (once per source, flags and machine, and
    again when the cached one does not check out) and load it."""
    attempts = ([["-DDDKIT_CLONES"], []] if platform.machine() in ("x86_64", "AMD64") else [[]])
    errors = []
    for extra in attempts:
        flags = _FLAGS + extra
        key = hashlib.sha256("\0".join([SOURCE, *flags, _compiler(), platform.machine(),
                                        sys.platform]).encode()).hexdigest()[:16]
        path = kernel_dir() / f"token_histogram-{key}.so"
        lib = _load(path)
        if lib is not None:
            return lib
        error = _compile(path, flags)
        if error is not None:
            errors.append(error)
            continue
        lib = _load(path)
        if lib is not None:
            return lib
        errors.append(f"{path}: the library just built does not load or lacks the kernel")
    raise RuntimeError("; ".join(errors))


def available() -> bool:
    """True when the kernel is compiled and loaded (compiles it on the first call)."""
    global _lib, _failed
    if os.environ.get(ENV, "1") == "0":
        return False
    if _lib is None and _failed is None:
        try:
            _lib = _build()
        except (OSError, RuntimeError) as err:  # no compiler, no write access, ...
            _failed = str(err)
            warnings.warn(f"ddkit.signals.native: no C kernel ({_failed}); token_entropy uses its "
                          "slower torch path", RuntimeWarning, stacklevel=2)
    return _lib is not None


def edge_tolerance(edges: torch.Tensor) -> float:
    """How close to an integer, in bins, the kernel's float32 position of a value may be before
    its bin is settled against the edges: the largest distance of ``edges`` from the equal-width
    grid between its ends, plus the rounding of ``(v - lo) * scale`` in float32 (three roundings
    of at most 2^-24 relative each, on positions up to ``bins``; four are allowed) and float64
    slack. Farther from an integer, no edge can lie between the position and the true one."""
    e = edges.detach().cpu().double()
    bins = len(e) - 1
    grid = e[0] + torch.arange(bins + 1, dtype=torch.float64) * ((e[-1] - e[0]) / bins)
    deviation = float((e - grid).abs().max()) * bins / float(e[-1] - e[0])
    return deviation + 4 * 2.0**-24 * bins + 1e-9


def token_entropy_sum(x: torch.Tensor, edges: torch.Tensor, lut: torch.Tensor, tol: float,
                      threads: int = 1) -> float:
    """Sum over the tokens of ``x [n, C, H, W]`` (float32, CPU) of each token's histogram entropy
    (bits) over the bins ``edges [bins + 1]`` (float32; numpy.histogram's bins, values outside
    dropped). ``lut [C + 1]`` float64: c log2 c. ``tol``: ``edge_tolerance(edges)``. ``threads``
    > 1 splits the images between that many threads (ctypes releases the GIL)."""
    if not available():
        raise RuntimeError("ddkit.signals.native: the C kernel is not available")
    n, C, H, W = x.shape
    x = x.contiguous()
    edges = edges.to(torch.float32).contiguous()
    bins = len(edges) - 1
    lut = lut.to(torch.float64).contiguous()
    if x.dtype != torch.float32 or x.device.type != "cpu":
        raise ValueError(f"x: expected float32 on the CPU, got {x.dtype} on {x.device}")
    if lut.numel() < C + 1:
        raise ValueError(f"lut: needs C + 1 = {C + 1} entries, has {lut.numel()}")
    scale = bins / (float(edges[-1]) - float(edges[0]))

    def part(images: torch.Tensor) -> float:
        counts = torch.empty(H * W * (bins + 1), dtype=torch.int32)
        k_row = torch.empty(H * W, dtype=torch.int32)
        return _lib.ddkit_token_entropy_sum(images.data_ptr(), len(images), C, H * W,
                                            edges.data_ptr(), bins, scale, tol,
                                            lut.data_ptr(), counts.data_ptr(), k_row.data_ptr())

    parts = x.tensor_split(max(1, min(threads, n)))
    if len(parts) == 1:
        return part(x)
    return sum(_pool(len(parts)).map(part, parts))


_pools: dict[int, ThreadPoolExecutor] = {}


def _pool(threads: int) -> ThreadPoolExecutor:
    if threads not in _pools:
        _pools[threads] = ThreadPoolExecutor(threads, thread_name_prefix="ddkit-native")
    return _pools[threads]
