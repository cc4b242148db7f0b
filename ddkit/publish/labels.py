"""Text that never overlaps in a figure: a small deterministic repel step that places point labels
(``place_labels``) and the check the tests run on every figure (``overlapping_texts``).

``place_labels`` tries, for each label in turn, a fixed list of offsets around its point (the
nearest ring first, then rings further out, joined to the point by a thin leader line) and keeps
the first whose text box stays inside the axes and clear of every label already placed, of every
point and error bar and of the figure's other text, and whose leader line crosses no text; a
label that finds no free place goes to a key instead (the point gets a letter, the key's line
under the axes says what it is). Same figure, same places: nothing is random. Place the labels
after the figure's final layout (``tight_layout``), since a later layout change moves the points
under labels that stay where they are.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.text import Annotation, Text
from matplotlib.transforms import Bbox, ScaledTranslation

PAD_PT = 1.5          # clearance (points) kept around every placed label
POINT_PX = 4.0        # half-size (pixels) of the box kept clear around each point
RINGS_PT = (5.0, 12.0, 22.0, 34.0, 48.0, 64.0, 84.0)   # offsets (points) of the candidate rings
DIRECTIONS = ((1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1),
              (1, 0.5), (1, -0.5), (-1, 0.5), (-1, -0.5), (0.5, 1), (-0.5, 1), (0.5, -1),
              (-0.5, -1))


def _renderer(fig: Figure):
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def _tick_labels(axis) -> list[Text]:
    """The labels of the ticks an axis draws: ticks outside its view keep stale labels that are
    not drawn (matplotlib's ``get_ticklabels`` still returns them)."""
    transform = axis.get_transform()
    low, high = sorted(transform.transform(np.asarray(axis.get_view_interval(), float)))
    slack = 1e-9 * max(1.0, abs(high - low))
    out = []
    for tick in [*axis.get_major_ticks(), *axis.get_minor_ticks()]:
        where = transform.transform(np.asarray([tick.get_loc()], float))[0]
        if low - slack <= where <= high + slack:
            out += [tick.label1, tick.label2]
    return out


def drawn_texts(fig: Figure) -> list[Text]:
    """Every piece of text the drawn figure shows: figure texts and legends, and per visible axes
    its titles, axis labels, offset texts, the tick labels in view, annotations and legend."""
    _renderer(fig)
    found: list[Text] = [*fig.texts]
    for legend in fig.legends:
        found += [legend.get_title(), *legend.get_texts()]
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        found += [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label,
                  ax.xaxis.get_offset_text(), ax.yaxis.get_offset_text(),
                  *_tick_labels(ax.xaxis), *_tick_labels(ax.yaxis), *ax.texts]
        legend = ax.get_legend()
        if legend is not None and legend.get_visible():
            found += [legend.get_title(), *legend.get_texts()]
    return [t for t in dict.fromkeys(found) if t.get_visible() and t.get_text().strip()]


def _overlap(a: Bbox, b: Bbox, tolerance: float = 0.5) -> bool:
    """The two boxes share an area more than ``tolerance`` pixels wide and high."""
    width = min(a.x1, b.x1) - max(a.x0, b.x0)
    height = min(a.y1, b.y1) - max(a.y0, b.y0)
    return width > tolerance and height > tolerance


def overlapping_texts(fig: Figure) -> list[tuple[str, str]]:
    """The pairs of drawn texts (``drawn_texts``) whose boxes overlap, as their strings."""
    renderer = _renderer(fig)
    texts = drawn_texts(fig)
    boxes = [_box(t, renderer) for t in texts]
    return [(texts[i].get_text(), texts[j].get_text())
            for i in range(len(texts)) for j in range(i + 1, len(texts))
            if _overlap(boxes[i], boxes[j])]


def _candidates() -> list[tuple[float, float, str, str]]:
    """(dx, dy in points, ha, va), nearest ring first; within a ring, the diagonals first."""
    out = []
    for radius in RINGS_PT:
        for sx, sy in DIRECTIONS:
            ha = "left" if sx > 0 else "right" if sx < 0 else "center"
            va = "bottom" if sy > 0 else "top" if sy < 0 else "center"
            out.append((sx * radius, sy * radius, ha, va))
    return out


def _box(text: Text, renderer) -> Bbox:
    """The box of a text's glyphs (an annotation's own ``get_window_extent`` adds its arrow)."""
    if isinstance(text, Annotation):
        text.update_positions(renderer)   # where its offset puts it, as drawing would
    return Text.get_window_extent(text, renderer)


def _crosses(start, end, boxes: list[Bbox], samples: int = 16) -> bool:
    """The segment from ``start`` to ``end`` (pixels) passes through one of ``boxes``."""
    for f in np.linspace(0, 1, samples + 2)[1:-1]:
        px, py = start[0] + f * (end[0] - start[0]), start[1] + f * (end[1] - start[1])
        if any(b.x0 < px < b.x1 and b.y0 < py < b.y1 for b in boxes):
            return True
    return False


class _Placer:
    """Tries a text at each candidate offset around a point, keeping the boxes already taken:
    ``obstacles`` (points, error bars) and ``texts`` (every text, and each label placed)."""

    def __init__(self, ax: Axes, obstacles: list[Bbox]):
        self.ax, self.fig = ax, ax.figure
        self.renderer = _renderer(self.fig)
        self.frame = ax.get_window_extent(self.renderer)
        self.scale = self.fig.dpi / 72.0
        self.obstacles = obstacles
        self.texts = [_box(t, self.renderer) for t in drawn_texts(self.fig)]

    def _text(self, label, xy, offset, **kwargs) -> Text:
        dx, dy, ha, va = offset
        near = abs(dx) <= RINGS_PT[0] and abs(dy) <= RINGS_PT[0]
        color = kwargs.get("color")
        return self.ax.annotate(label, xy, xytext=(dx, dy), textcoords="offset points", ha=ha,
                                va=va, arrowprops=None if near else dict(
                                    arrowstyle="-", lw=0.4, color=color, alpha=0.6, shrinkA=0,
                                    shrinkB=2), **kwargs)

    def fits(self, label, xy, offset, pad: float, **kwargs) -> tuple[bool, bool, Bbox]:
        """(free, inside the axes, box padded by ``pad`` points) of ``label`` at ``offset`` from
        the point ``xy``: free when the box meets no obstacle and no text, and the leader line
        from the point crosses no text."""
        text = self._text(label, xy, offset, **kwargs)
        box = _box(text, self.renderer).padded(pad * self.scale)
        text.remove()
        inside = (box.x0 >= self.frame.x0 and box.x1 <= self.frame.x1
                  and box.y0 >= self.frame.y0 and box.y1 <= self.frame.y1)
        point = self.ax.transData.transform([xy])[0]
        anchor = point + np.asarray(offset[:2], float) * self.scale
        free = (not any(_overlap(box, b, 0.0) for b in self.obstacles + self.texts)
                and not _crosses(point, anchor, self.texts))
        return free, inside, box

    def place(self, label, xy, offset, box: Bbox, **kwargs) -> Text:
        self.texts.append(box)
        return self._text(label, xy, offset, **kwargs)


def place_labels(ax: Axes, x: Sequence[float], y: Sequence[float], labels: Sequence[str],
                 fontsize: float = 6, color: str | Sequence[str] = "#333333",
                 key_title: str = "labels",
                 spans: Sequence[tuple[float, float]] | None = None) -> list[Text]:
    """Label each point (``x``, ``y`` in data coordinates) of ``ax`` with its text, each placed
    where its box overlaps no other label, no point (nor its error bar: ``spans``, each point's
    (low, high) in data coordinates) and no other text of the figure, and where its leader line
    crosses no text (see the module docstring); labels that fit nowhere become letters keyed in a
    text under the axes. Returns the texts placed, keys included."""
    colors = [color] * len(labels) if isinstance(color, str) else list(color)
    px = ax.transData.transform(np.column_stack([np.asarray(x, float), np.asarray(y, float)]))
    obstacles = [Bbox.from_extents(cx - POINT_PX, cy - POINT_PX, cx + POINT_PX, cy + POINT_PX)
                 for cx, cy in px]
    for (lo, hi), xi in zip(spans or [], x):   # error bars: a thin box along each
        (bx, by0), (_, by1) = ax.transData.transform([(xi, lo), (xi, hi)])
        obstacles.append(Bbox.from_extents(bx - POINT_PX / 2, min(by0, by1), bx + POINT_PX / 2,
                                           max(by0, by1)))
    placer = _Placer(ax, obstacles)
    order = sorted(range(len(labels)), key=lambda i: (px[i][0], px[i][1], labels[i]))
    placed: list[Text] = []
    unplaced: list[int] = []
    for i in order:
        style = {"fontsize": fontsize, "color": colors[i]}
        for offset in _candidates():
            free, inside, box = placer.fits(labels[i], (x[i], y[i]), offset, PAD_PT, **style)
            if free and inside:
                placed.append(placer.place(labels[i], (x[i], y[i]), offset, box, **style))
                break
        else:
            unplaced.append(i)
    if unplaced:
        placed += _key(placer, [(i, labels[i], colors[i]) for i in unplaced], x, y, fontsize,
                       key_title)
    return placed


def _lowest(ax: Axes, renderer) -> float:
    """The lowest pixel row of the axes' own text and legend (tick labels, x label, key)."""
    parts = [ax.get_window_extent(renderer)]
    parts += [_box(t, renderer) for t in
              [ax.xaxis.label, *_tick_labels(ax.xaxis), *ax.texts]
              if t.get_visible() and t.get_text().strip()]
    if ax.get_legend() is not None:
        parts.append(ax.get_legend().get_window_extent(renderer))
    return min(b.y0 for b in parts)


def _mark(n: int) -> str:
    """The key's marks: a, b, ..., z, aa, ab, ... (letters: a point label may be a number)."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    return letters[n] if n < 26 else _mark(n // 26 - 1) + letters[n % 26]


def _key(placer: _Placer, items, x, y, fontsize, title) -> list[Text]:
    """Mark the points in ``items`` with letters (placed like labels, nearest free ring; inside
    the axes where one fits) and write the key under everything else of the axes, one line per
    point."""
    out = []
    marks = [_mark(n) for n in range(len(items))]
    for mark, (i, _, color) in zip(marks, items):
        style = {"fontsize": fontsize, "color": color, "fontweight": "bold"}
        fits = []   # (outside the axes, order, offset, box): inside first, in ring order
        for offset in _candidates():
            free, inside, box = placer.fits(mark, (x[i], y[i]), offset, 0.0, **style)
            if free:
                fits.append((not inside, len(fits), offset, box))
                if inside:
                    break
        if fits:
            _, _, offset, box = min(fits)
            out.append(placer.place(mark, (x[i], y[i]), offset, box, **style))
    lines = [f"{mark}: {label}" for mark, (_, label, _) in zip(marks, items)]
    ax, fig, renderer = placer.ax, placer.fig, placer.renderer
    drop_in = (ax.get_window_extent(renderer).y0 - _lowest(ax, renderer)) / fig.dpi + PAD_PT / 72
    where = ax.transAxes + ScaledTranslation(0, -drop_in, fig.dpi_scale_trans)
    out.append(ax.text(0.0, 0.0, "\n".join([f"{title}:", *lines]), transform=where,
                       fontsize=fontsize, va="top", ha="left"))
    return out


def legend_below(ax: Axes, pad_pt: float = 6.0, **kwargs) -> Legend:
    """``ax.legend(**kwargs)`` placed under the axes' x label and tick labels, at a fixed distance
    in points: a legend anchored at a fraction of the axes' height (``bbox_to_anchor=(0, -0.2)``)
    lands on the x label once a layout shrinks the axes."""
    fig = ax.figure
    renderer = _renderer(fig)
    frame = ax.get_window_extent(renderer)
    below = [_box(t, renderer).y0 for t in [ax.xaxis.label, *_tick_labels(ax.xaxis)]
             if t.get_visible() and t.get_text().strip()]
    drop_in = (frame.y0 - min(below, default=frame.y0)) / fig.dpi + pad_pt / 72.0
    where = ax.transAxes + ScaledTranslation(0, -drop_in, fig.dpi_scale_trans)
    return ax.legend(loc="upper left", bbox_to_anchor=(0, 0), bbox_transform=where, **kwargs)
