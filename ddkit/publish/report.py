"""``ddkit analyze``: the paper's per-layer signals of any timm ViT-like model, written to a folder.

One model (a timm name with random, hub or local weights, or a kit run folder) or a teacher and a
student, on the held-out split of any data set the kit reads (Fashion-MNIST, CIFAR-10/100, an
ImageFolder tree). The output folder holds::

    layers.csv                    the tidy per-layer table of every model (dynamics.analyze)
    profiles_raw.png              entropy (global range), intensity, magnitudes, ΔLogAmp per layer
    profiles_scale_controlled.png entropy (per-layer ranges), intensity ÷ |F|, effective rank, ...
    <model>_channel_spectra.png   the channel spectrum of every block
    <model>_spatial_dlogamp.png   spatial ΔLogAmp of every block
    cka.csv, cka.png              (pair) linear CKA between every teacher and student block
    feature_fit.csv, feature_fit.png  (pair) how well the student fits the teacher at a layer map
    summary.md                    what the numbers say: the entropy U, trends, raw and controlled
    settings.json                 what was analysed, how, versions, wall time

Every figure is drawn by ``ddkit.publish.plots``, the functions the notebooks use.

Over 450 lines on purpose: the one command's input checks, compute and written summary, which
name each other's files and settings.
"""
from __future__ import annotations

import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ddkit.core.anatomy import check_vit_like, input_size
from ddkit.core.data import DATASETS, EVAL_CROP_PCT, build_dataset, dataset_info
from ddkit.core.device import resolve_device
from ddkit.core.hooks import input_grid
from ddkit.core.losses import feature_loss_diagnostics, resolve_layer_pairs
from ddkit.core.models import (
    SHIPPED_TEACHERS,
    check_builds,
    check_model_name,
    check_patch_grid,
    create_model,
    create_with_checkpoint,
    load_weights,
)
from ddkit.core.sources import arch_name, model_source, timm_create
from ddkit.runs.store import check_safetensors, slug, write_json, write_text
from ddkit.runs.train import load_run
from ddkit.signals import dynamics, mismatch
from ddkit.signals.metrics import channel_spectrum, linear_cka, spatial_log_amplitude

RAW = ["token_entropy", "spectrum_intensity", "activation_magnitude", "gradient_magnitude",
       "dlogamp_high"]
SCALE_CONTROLLED = ["token_entropy_per_layer", "intensity_over_magnitude", "effective_rank",
                    "pca_dims", "pca_dims_95", "energy_concentration_90"]


def say(message: str) -> None:
    """One progress line on stderr."""
    print(f"[ddkit] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from: a timm name (random init, ``pretrained`` hub weights or a local
    ``checkpoint`` file, ``kwargs`` for ``timm.create_model``) or a kit run folder."""
    spec: str
    pretrained: bool = False
    checkpoint: str | None = None
    kwargs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Request:
    """One ``ddkit analyze`` call. ``models``: ``{label: source}``, one model or teacher + student."""
    models: dict
    data: str | None = None            # data.DATASETS name or ImageFolder path; None: a run
                                       # folder's own data set, else fashion_mnist
    data_root: str | None = None
    img_size: int | None = None        # None: the (first) model's input size
    n: int | None = None               # None: 200, or 32 paper-faithful
    batch_size: int | None = None
    device: str = "auto"
    paper_faithful: bool = False
    prefix_tokens: str | None = None   # None: keep when paper-faithful, else drop
    layers: Any = "first_last"         # the layer map of the feature fit (pair only)
    seed: int = 0
    out: str = "ddkit-analysis"
    figures: bool = True               # False: tables and summary only


# --------------------------------------------------------------------------- inputs


def resolve_data(data: str | None, root: str | None,
                 models: dict | None = None) -> tuple[str, str | None]:
    """``(dataset name, root)``: a name of ``DATASETS`` or an existing folder (an ImageFolder);
    ``None``: the data set of the first model that is a kit run folder, else Fashion-MNIST."""
    if data is None:
        for source in (models or {}).values():
            if Path(source.spec).is_dir():
                run_data = load_run(source.spec).config.data
                return run_data.name, root or run_data.root
        data = "fashion_mnist"
    if data in DATASETS and data != "imagefolder":
        return data, root
    if data == "imagefolder":
        if root is None:
            raise ValueError("--data imagefolder needs --data-root, or pass the folder as --data")
        return data, root
    if Path(data).is_dir():
        return "imagefolder", data
    raise ValueError(f"--data {data!r}: neither a data set name {[d for d in DATASETS if d != 'imagefolder']} "
                     "nor an ImageFolder folder (with val/ or class folders)")


def load_model(source: ModelSource, info: dict) -> tuple[nn.Module, str]:
    """``(model in eval mode, a description)``; a model that is not ViT-like is refused before
    any weights are read. Random-init models get the data's ``in_chans`` and ``num_classes``;
    hub weights keep their head; a local checkpoint is loaded through timm's pretrained route
    (``models.create_with_checkpoint``: its filter_fn resamples the position embeddings to the
    size the model is built for) and keeps its own classes and channels. ``hf-hub:`` and
    ``local-dir:`` names go to timm as they are; an unreachable hub is one error line."""
    path = Path(source.spec)
    if path.is_dir():
        if source.pretrained or source.checkpoint or source.kwargs:
            raise ValueError(f"{path} is a run folder: it brings its own model and weights, drop "
                             "--pretrained/--checkpoint/--model-arg")
        run = load_run(path)
        weights = run.dir.final_weights
        if not weights.is_file():
            raise FileNotFoundError(f"{path} has no final weights ({weights.name}): the run has "
                                    "not finished; finish it with `ddkit train` first")
        check_safetensors(weights, run.dir.fix)
        model = run.load_model()
        check_vit_like(model)
        return model, f"kit run `{path}` ({run.config.model.name}, final weights)"
    name = source.spec
    check_model_name(name)
    kwargs = dict(source.kwargs)
    sourced = model_source(name) is not None
    if source.checkpoint is None and not sourced:
        kwargs.setdefault("in_chans", info["in_chans"])
    if not source.pretrained and source.checkpoint is None and not sourced:
        kwargs.setdefault("num_classes", info["num_classes"])
    check_builds(name, **kwargs)                       # a bad size: one line, no traceback
    with torch.device("meta"):                         # refuse non-ViTs before any download
        check_vit_like(timm_create(arch_name(name), **kwargs))
    if source.pretrained:
        try:
            model = create_model(name, pretrained=True, **kwargs)
        except (ValueError, FileNotFoundError):   # ModelUnreachableError (hf-hub) included
            raise
        except Exception as err:  # hub and network errors come in many types
            raise ValueError(f"could not load hub weights for {name!r} ({type(err).__name__}: "
                             f"{err}); go online, or pass a local file with --checkpoint") from None
        if source.checkpoint is not None:
            load_weights(model, source.checkpoint)
    elif source.checkpoint is not None:
        model = create_with_checkpoint(name, source.checkpoint, **kwargs)
    else:
        model = create_model(name, **kwargs)
    shipped = source.pretrained and arch_name(name) in SHIPPED_TEACHERS
    weights = ("the teacher shipped with ddkit" if shipped else "hub weights" if source.pretrained
               else f"weights `{source.checkpoint}`" if source.checkpoint else "random init")
    if source.pretrained and source.checkpoint:
        weights = f"weights `{source.checkpoint}` (over hub weights)"
    args = ", ".join(f"{k}={v}" for k, v in source.kwargs.items())
    return model.eval(), f"`{name}`{f' ({args})' if args else ''}, {weights}"


def _channels(model: nn.Module) -> int | None:
    proj = getattr(model.patch_embed, "proj", None)
    return getattr(proj, "in_channels", None)


def _fit_channels(x: torch.Tensor, model: nn.Module, label: str) -> torch.Tensor:
    """Grey images for an RGB model are repeated over 3 channels; other mismatches fail."""
    want = _channels(model)
    if want is None or want == x.shape[1]:
        return x
    if x.shape[1] == 1:
        return x.expand(-1, want, -1, -1)
    raise ValueError(f"{label} takes {want}-channel images, the data has {x.shape[1]} channels")


def _image_size(request: Request, models: dict[str, nn.Module]) -> int:
    """The image size every model takes: --img-size, else the first model's input size."""
    sizes = {label: input_size(m) for label, m in models.items()}
    size = request.img_size or next(iter(sizes.values()))
    if size is None:
        raise ValueError("the model has no fixed input size: pass --img-size")
    for label, model in models.items():
        check_patch_grid(model.patch_embed, size, "--img-size" if request.img_size else "img_size")
        strict = getattr(model.patch_embed, "strict_img_size", True)
        if sizes[label] != size and strict:
            raise ValueError(f"{label} takes {sizes[label]} px images, not {size} px: build it "
                             f"for {size} px (--model-arg img_size={size}) or with "
                             "dynamic_img_size=true")
    return size


# --------------------------------------------------------------------------- reading the table


def _series(table: pd.DataFrame, model: str, metric: str) -> pd.Series:
    rows = table[(table["model"] == model) & (table["metric"] == metric)]
    return rows.set_index("layer")["value"].sort_index()


def _spearman(values: pd.Series) -> float:
    if len(values) < 3 or values.nunique() < 2:
        return float("nan")
    ranks = values.rank().to_numpy()
    return float(np.corrcoef(np.arange(len(values)), ranks)[0, 1])


def entropy_shape(values: pd.Series) -> str:
    """The U of an entropy profile in words: where the minimum lies, first − min, last − min."""
    if values.empty:
        return "not measured"
    lo_layer, lo = int(values.idxmin()), float(values.min())
    first, last = float(values.iloc[0]), float(values.iloc[-1])
    n = len(values)
    text = (f"minimum {lo:.3f} bits at L{lo_layer + 1} of {n}; first − min = {first - lo:.3f}, "
            f"last − min = {last - lo:.3f} bits")
    if lo_layer in (0, n - 1):
        end = "first" if lo_layer == 0 else "last"
        return f"no U: the minimum is at the {end} block ({text})"
    return f"U of depth {min(first, last) - lo:.3f} bits ({text})"


def trend(values: pd.Series, unit: str = "") -> str:
    """First → last block, their ratio and Spearman's ρ of the value against depth."""
    if values.empty:
        return "not measured"
    first, last = float(values.iloc[0]), float(values.iloc[-1])
    ratio = f", last/first {last / first:.2f}" if first != 0 else ""
    rho = _spearman(values)
    if np.isnan(rho):          # two blocks, or a flat profile: the sign of last - first
        direction = "higher at the last block" if last > first else (
            "lower at the last block" if last < first else "flat")
        return f"{direction}: L1 {first:.4g}{unit} → L{len(values)} {last:.4g}{unit}{ratio}"
    direction = ("rises with depth" if rho > 0.5 else "falls with depth" if rho < -0.5
                 else "no monotone trend")
    return (f"{direction}: L1 {first:.4g}{unit} → L{len(values)} {last:.4g}{unit}{ratio}, "
            f"Spearman ρ over depth {rho:+.2f}")


def summary_lines(table: pd.DataFrame, model: str) -> list[str]:
    """The markdown bullet lines of one model's signals, raw and scale-controlled."""
    s = lambda metric: _series(table, model, metric)
    prefix = table.loc[(table["model"] == model) & (table["metric"] == "gradient_magnitude"),
                       "prefix_tokens"]
    kept = "kept" if (prefix == "keep").any() else "dropped"
    grads = s("gradient_magnitude")
    silent = (["- the last block's gradient is exactly 0: with prefix tokens dropped, its patch "
               "tokens do not reach the logits (the head reads the class/pooled prefix token); "
               "`--prefix-tokens keep` averages over the whole block output, as the official "
               "analysis"] if kept == "dropped" and len(grads) and grads.iloc[-1] == 0 else [])
    return [
        "Raw (the paper's views; global-range entropy and intensity follow the feature scale):",
        "",
        f"- token entropy, one range for all blocks: {entropy_shape(s('token_entropy'))}",
        f"- channel-spectrum intensity: {trend(s('spectrum_intensity'))}",
        f"- activation magnitude (prefix tokens {kept}): {trend(s('activation_magnitude'))}",
        f"- gradient magnitude (prefix tokens {kept}): {trend(s('gradient_magnitude'))}",
        *silent,
        "",
        "Scale-controlled:",
        "",
        f"- token entropy, each block binned over its own range: "
        f"{entropy_shape(s('token_entropy_per_layer'))}",
        f"- intensity ÷ mean |activation|: {trend(s('intensity_over_magnitude'))}",
        f"- effective rank: {trend(s('effective_rank'))}",
        f"- PCs for 90 % of the variance: {trend(s('pca_dims'))}",
        f"- PCs for 95 % of the variance, interpolated: {trend(s('pca_dims_95'))}",
        "",
    ]


# --------------------------------------------------------------------------- the command


def _save(fig, name: str, figures: Path) -> Path:
    from ddkit.publish.plots import plt, save_figure  # lazy: matplotlib and seaborn start slowly; only --figures draws
    path = save_figure(fig, name, figures)[0]
    plt.close(fig)
    return path


def _resize(name: str, size: int, interpolation: str) -> str:
    if name == "fashion_mnist":
        return f"28 px images resized bilinearly to {size}" if size != 28 else "native 28 px"
    return (f"{interpolation} resize to {int(size / EVAL_CROP_PCT)}, centre crop {size}")


def check_out(out: str | Path) -> Path:
    """``out`` as a Path when it is a folder that can be written or can be made (nothing is
    created): ValueError naming it otherwise, before any compute."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: a file, not a folder; pick a folder to write to")
    existing = next((p for p in (out, *out.parents) if p.exists()), None)
    if existing is None or not existing.is_dir():
        raise ValueError(f"--out {out}: {existing} is a file, not a folder; pick a folder to "
                         "write to")
    try:                                         # root passes every permission check: try it
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise ValueError(f"--out {out}: cannot write in {existing} ({err.strerror}); pick a "
                         "folder you can write to") from None
    return out


def run(request: Request) -> Path:
    """Analyse the request's model(s) and write the output folder; returns ``summary.md``.
    Bad input (unknown names, a non-ViT, a damaged file, a wrong device, an --out that cannot
    be written) fails before any compute; files are written only once everything is computed."""
    began = time.perf_counter()
    check_out(request.out)
    device = resolve_device(request.device)
    name, root = resolve_data(request.data, request.data_root, request.models)
    if request.n is not None and request.n < 1:
        raise ValueError(f"--n {request.n}: need at least one image")
    if request.batch_size is not None and request.batch_size < 1:
        raise ValueError(f"--batch-size {request.batch_size}: must be >= 1")
    if request.prefix_tokens not in (None, *dynamics.PREFIX_TOKENS):
        raise ValueError(f"--prefix-tokens {request.prefix_tokens!r}; choose one of "
                         f"{dynamics.PREFIX_TOKENS}")
    info = dataset_info(name, root)
    pair = len(request.models) == 2
    models, described = {}, {}
    for label, source in request.models.items():
        say(f"{label}: building {source.spec}")
        models[label], described[label] = load_model(source, info)
    pairs = None
    if pair:
        teacher, student = models["teacher"], models["student"]
        n_t, n_s = len(teacher.blocks), len(student.blocks)
        pairs = resolve_layer_pairs(request.layers, n_s, n_t)
        if student.embed_dim > teacher.embed_dim:
            raise ValueError(f"the feature fit needs a student no wider than the teacher: "
                             f"student {student.embed_dim} channels, teacher {teacher.embed_dim}")
    size = _image_size(request, models)
    if pair:
        grids = {label: input_grid(m.patch_embed, (size, size)) for label, m in models.items()}
        if grids["teacher"] != grids["student"]:
            raise ValueError(f"CKA and the feature fit compare tokens: the teacher's {size} px "
                             f"grid is {grids['teacher']}, the student's {grids['student']}; "
                             "pick models with the same patch size")
    interpolation = "bilinear" if request.paper_faithful else "bicubic"
    test_set = build_dataset(name, "test", root=root, img_size=size, interpolation=interpolation)
    x, y = dynamics.analysis_images(test_set, request.n, request.paper_faithful, request.seed)
    how = "the first" if request.paper_faithful else "a class-balanced sample of"
    say(f"{how} {len(x)} held-out images of {name} ({_resize(name, size, interpolation)}), on "
        f"{device}")
    prefix_tokens = request.prefix_tokens or ("keep" if request.paper_faithful else "drop")

    tables, views, feats, notes = [], {}, {}, []
    for label, model in models.items():
        model.to(device)
        xm, ym = _fit_channels(x, model, label).to(device), y.to(device)
        if getattr(model, "num_classes", info["num_classes"]) != info["num_classes"]:
            notes.append(f"{label}: its head has {model.num_classes} classes, the data "
                         f"{info['num_classes']}; gradients are of the logit at the data's label "
                         "index of that head")
        say(f"{label}: recording {len(model.blocks)} blocks")
        tables.append(dynamics.analyze(
            model, (xm, ym), name=label, n=len(x), paper_faithful=request.paper_faithful,
            prefix_tokens=prefix_tokens, device=device, batch_size=request.batch_size,
            progress=True))
        feats[label] = dynamics.record_blocks(model, xm, ym, gradients=False,
                                              batch_size=request.batch_size).feats
        views[label] = {"spectrum": channel_spectrum(feats[label])[0],
                        "dlogamp": spatial_log_amplitude(feats[label])}
    table = pd.concat(tables, ignore_index=True)
    cka = fit = None
    if pair:
        say("pair: CKA between every teacher and student block, and the feature fit")
        ft, fs = feats["teacher"], feats["student"]
        cka = linear_cka(ft, fs)                                       # [L_t, L_s]
        fit = pd.DataFrame([{"pair": f"s{s}-t{t}", "student_block": s, "teacher_block": t,
                             **feature_loss_diagnostics(fs[s], ft[t])} for s, t in pairs])
        fit = fit.merge(pd.DataFrame(mismatch.pair_rows(pairs, ft, fs)).drop(columns="images"),
                        on=["student_block", "teacher_block"])
    del feats

    out = Path(request.out)
    figures = out / "figures"
    written = [out / "layers.csv"]
    write_text(out / "layers.csv", table.to_csv(index=False))
    if pair:
        cka_table = pd.DataFrame(cka.cpu().numpy(),
                                 index=pd.Index(range(cka.shape[0]), name="teacher_block"),
                                 columns=[f"s{j}" for j in range(cka.shape[1])])
        write_text(out / "cka.csv", cka_table.to_csv())
        write_text(out / "feature_fit.csv", fit.to_csv(index=False))
        written += [out / "cka.csv", out / "feature_fit.csv"]
    if request.figures:
        say("drawing figures")
        written += _figures(table, views, cka, fit, figures)
    wall = time.perf_counter() - began
    settings = {**{k: v for k, v in asdict(request).items() if k != "models"},
                "models": {label: {**asdict(src), "description": described[label]}
                           for label, src in request.models.items()},
                "dataset": name, "data_root": root, "img_size": size, "images": len(x),
                "magnitude_images": (min(dynamics.PAPER_MAGNITUDE_IMAGES, len(x))
                                     if request.paper_faithful else len(x)),
                "resize": _resize(name, size, interpolation),
                "prefix_tokens": prefix_tokens, "device_used": str(device),
                "wall_time_s": round(wall, 2), "python": platform.python_version(),
                "torch": torch.__version__, "files": [str(p.relative_to(out)) for p in written]}
    write_json(out / "settings.json", settings)
    summary = out / "summary.md"
    write_text(summary, _markdown(request, settings, described, table, cka, fit, notes))
    say(f"wrote {len(written) + 2} files to {out} in {wall:.1f} s; read {summary}")
    return summary


def _figures(table: pd.DataFrame, views: dict, cka: torch.Tensor | None,
             fit: pd.DataFrame | None, folder: Path) -> list[Path]:
    """Every figure of an analysis, drawn by ``ddkit.publish.plots``; returns the files written."""
    from ddkit.publish import plots  # lazy: matplotlib and seaborn start slowly; only --figures draws
    written = [
        _save(plots.plot_metric_panels(table, RAW, hue="model", title="raw"), "profiles_raw",
              folder),
        _save(plots.plot_metric_panels(table, SCALE_CONTROLLED, hue="model",
                                       title="scale-controlled"), "profiles_scale_controlled",
              folder)]
    for label, view in views.items():
        written.append(_save(plots.plot_spectra(view["spectrum"], title=f"{label}: channel spectra"),
                             f"{slug(label)}_channel_spectra", folder))
        written.append(_save(plots.plot_log_amplitude(view["dlogamp"],
                                                      title=f"{label}: spatial ΔLogAmp"),
                             f"{slug(label)}_spatial_dlogamp", folder))
    if cka is not None:
        written.append(_save(plots.plot_matrix(cka.T, "student block", "teacher block",
                                               title="linear CKA"), "cka", folder))
        written.append(_save(plots.plot_bars(fit, x="pair", y="relative",
                                             title="feature fit: loss ÷ all-zero-prediction loss"),
                             "feature_fit", folder))
    return written


def _markdown(request: Request, settings: dict, described: dict, table: pd.DataFrame,
              cka: torch.Tensor | None, fit: pd.DataFrame | None, notes: list[str]) -> str:
    pf = request.paper_faithful
    prefix_how = ("averaged over the whole block output, as the official analysis"
                  if settings["prefix_tokens"] == "keep" else "patch tokens only")
    images = (f"the first {settings['images']} held-out images in order for entropy, spectrum "
              f"and capacity; the first {settings['magnitude_images']} passed one at a time "
              "(score: each image's own target logit) for the magnitudes; float32 histogram "
              "edges" if pf else
              f"{settings['images']} class-balanced held-out images (seed {request.seed}) for "
              "every metric; score: the sum of each image's target-class logit")
    lines = [f"# ddkit analyze: {' vs '.join(described)}", "",
             "| setting | value |", "|---|---|",
             *[f"| {label} | {text} |" for label, text in described.items()],
             f"| data | {settings['dataset']}{' at ' + settings['data_root'] if settings['data_root'] else ''}, "
             f"held-out split, {settings['img_size']} px ({settings['resize']}) |",
             f"| images | {images} |",
             f"| prefix tokens | {settings['prefix_tokens']} for the magnitudes "
             f"({prefix_how}); "
             "every other metric reads the patch-token grid |",
             f"| paper-faithful | {'yes' if pf else 'no'} |",
             f"| device, wall time | {settings['device_used']}, {settings['wall_time_s']:.1f} s |",
             ""]
    for note in notes:
        lines += [f"Note: {note}.", ""]
    for label in described:
        lines += [f"## {label}", "", *summary_lines(table, label)]
    if cka is not None:
        best = cka.argmax(0).tolist()                       # best teacher block per student block
        lines += ["## teacher vs student", "",
                  "Linear CKA (`cka.csv`, rows teacher blocks): the most similar teacher block of "
                  "each student block: " +
                  ", ".join(f"s{j}→t{i} ({float(cka[i, j]):.2f})" for j, i in enumerate(best)),
                  "", "Feature fit of the layer map (`feature_fit.csv`; SpectralKD loss of the "
                  "current student, the same loss for an all-zero prediction, their ratio, token "
                  "cosine to the channel-pooled teacher):", "",
                  "| pair | raw | all-zero | relative | cosine |", "|---|---|---|---|---|",
                  *[f"| {r.pair} | {r.raw:.4g} | {r.zero:.4g} | {r.relative:.3f} | {r.cosine:.3f} |"
                    for r in fit.itertuples()], "",
                  "Encoding mismatch of each pair (`feature_fit.csv`; `ddkit.signals.mismatch`): the "
                  "follow-up's dimension of the teacher block (shared uncentred basis, per image "
                  "the smallest d holding 95 % of its token energy, 99th percentile over images) "
                  "over the student block's width (above 1 the student cannot hold the teacher's "
                  "code), the uncentred global and the centred dimension beside it, and the "
                  "student's own follow-up dimension:", "",
                  "| pair | teacher dim (follow-up) | global | centred | student dim | "
                  "student width | ratio |",
                  "|---|---|---|---|---|---|---|",
                  *[f"| {r.pair} | {r.teacher_dim_followup:.1f} | {r.teacher_dim_global} | "
                    f"{r.teacher_dim_centred:.1f} | {r.student_dim_followup:.1f} | "
                    f"{r.student_width} | {r.ratio:.2f} |" for r in fit.itertuples()], ""]
    lines += ["Files: " + ", ".join(f"`{f}`" for f in settings["files"]) + ".", ""]
    return "\n".join(lines)
