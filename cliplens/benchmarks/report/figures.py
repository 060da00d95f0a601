"""PNG figures of ``cliplens report``: a bar chart per metric and an overlay grid of example maps.

Drawn with matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..results.examples import Example, load_examples
from ..results.files import STATUS_OK, short_spec, slug
from .scores import grouped, higher_is_better, metric_names, metric_title, score


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib import font_manager

    # labels in DejaVu Sans, falling back to Noto Sans CJK where installed (fonts-noto-cjk); emoji not covered
    installed = {f.name for f in font_manager.fontManager.ttflist}
    plt.rcParams["font.family"] = ["DejaVu Sans"] + [n for n in ("Noto Sans CJK JP",) if n in installed]
    return plt


def _wrapped(text: str, figure_width: float) -> str:
    """``text`` wrapped to the figure's width (about 14 characters per inch at font size 10)."""
    import textwrap

    return "\n".join(textwrap.fill(line, max(20, int(figure_width * 14))) for line in text.splitlines())


def short_label(spec: str, width: int = 48) -> str:
    """A spec shortened for a figure: long paths keep their last two parts (``voc:…/VOCdevkit/VOC2012``)."""
    if len(spec) <= width:
        return spec
    name, sep, rest = spec.partition(":")
    path, q, query = rest.partition("?")
    if "/" not in path:
        return spec[: width - 1] + "…"
    tail = "/".join(path.rstrip("/").split("/")[-2:])
    text = f"{name}{sep}…/{tail}{q}{query}"
    return text if len(text) <= width else text[: width - 1] + "…"


def _label_bars(ax: Any, bars: Any, values: list, explainers: list[str], by_name: dict[str, Any]) -> None:
    """Write each horizontal bar's value at its end (left of a negative one); ``failed`` in red, ``n/a`` for none."""
    for bar, value, e in zip(bars, values, explainers, strict=True):
        failed = e in by_name and by_name[e].get("status") != STATUS_OK
        text = "failed" if failed else ("n/a" if value is None else f"{value:.3g}")
        right = (value or 0) >= 0
        ax.annotate(
            text,
            (bar.get_width(), bar.get_y() + bar.get_height() / 2),
            ha="left" if right else "right",
            va="center",
            fontsize=8,
            xytext=(3 if right else -3, 0),
            textcoords="offset points",
            color="crimson" if failed else "black",
        )


def _by_score(results: Sequence[dict[str, Any]], name: str, higher: bool) -> list[str]:
    """Explainer names, best mean ``name`` score (over the groups that have one) first; unscored last, by name."""
    values: dict[str, list[float]] = {}
    for r in results:
        explainer = r.get("explainer", {}).get("name", "?")
        value = score(r, name)
        values.setdefault(explainer, [])
        if value is not None:
            values[explainer].append(value)

    def key(explainer: str) -> tuple[int, float, str]:
        got = values[explainer]
        if not got:
            return (1, 0.0, explainer)
        mean = sum(got) / len(got)
        return (0, -mean if higher else mean, explainer)

    return sorted(values, key=key)


def bar_charts(results: Sequence[dict[str, Any]], out: Path) -> list[Path]:
    """``bar_<metric>.png`` per metric: one horizontal bar per explainer (and per (backbone, dataset) group),
    the best score at the top, readable with many explainers."""
    plt = _pyplot()
    groups = grouped(results)
    files = []
    for name in metric_names(results):
        higher = higher_is_better(results, name)
        explainers = _by_score(results, name, higher)
        rows = len(explainers) * max(1, len(groups))
        fig, ax = plt.subplots(figsize=(8.0, max(3.2, 0.32 * rows + 1.8)))
        width = 0.8 / max(1, len(groups))
        y = np.arange(len(explainers))[::-1]  # the best at the top
        colours = plt.get_cmap("tab10")
        for g, ((backbone, dataset), members) in enumerate(groups.items()):
            by_name = {r.get("explainer", {}).get("name"): r for r in members}
            values = [score(by_name[e], name) if e in by_name else None for e in explainers]
            positions = y + 0.4 - width * (g + 0.5)
            lengths = [0.0 if v is None else v for v in values]
            bars = ax.barh(
                positions,
                lengths,
                width * 0.92,
                color=colours(g % 10),
                label=f"{short_label(backbone)} · {short_label(dataset)}",
            )
            _label_bars(ax, bars, values, explainers, by_name)
        ax.axvline(0, color="grey", linewidth=0.8)
        ax.set_yticks(y, explainers)
        ax.set_ylabel("explainer (best first)")
        ax.set_xlabel(f"{metric_title(name)} ({'higher' if higher else 'lower'} is better)")
        ax.margins(x=0.18)
        ax.grid(axis="x", alpha=0.3)
        if len(groups) == 1:
            ((backbone, dataset),) = groups
            ax.set_title(
                _wrapped(
                    f"{metric_title(name)} per explainer\n{short_label(backbone, 80)} on {short_label(dataset, 80)}",
                    fig.get_figwidth(),
                ),
                fontsize=10,
            )
        else:
            ax.set_title(f"{metric_title(name)} per explainer", fontsize=10)
            ax.legend(
                fontsize=8,
                title="backbone · dataset",
                title_fontsize=8,
                loc="upper center",
                bbox_to_anchor=(0.5, -0.3),
                ncol=min(3, len(groups)),
                frameon=False,
            )
        fig.tight_layout()
        path = out / f"bar_{slug(name)}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        files.append(path)
    return files


def _pick_class(example: Example, class_names: list[str]) -> int | None:
    """Row ``k`` of ``example.maps`` to show: the largest present class that is not named background."""
    if len(example.classes) == 0:
        return None
    areas = [int((example.mask == c).sum()) for c in example.classes]
    order = sorted(range(len(areas)), key=lambda k: -areas[k])
    for k in order:
        if class_names[int(example.classes[k])].lower() not in {"background", "bg", "unlabelled", "void"}:
            return k
    return order[0]


def example_grids(results: Sequence[dict[str, Any]], run_dir: Path, out: Path, rows: int = 3) -> list[Path]:
    """``examples_<backbone>_<dataset>.png``: rows of example images; columns the image, its ground truth
    and each explainer's map of the largest present (non-background) class."""
    plt = _pyplot()
    files = []
    for (backbone, dataset), members in grouped(results).items():
        loaded: dict[str, tuple[list[Example], list[str]]] = {}
        for r in sorted(members, key=lambda r: r.get("explainer", {}).get("name", "")):
            rel = r.get("examples")
            if r.get("status") == STATUS_OK and rel and (run_dir / rel).is_file():
                loaded[r["explainer"]["name"]] = load_examples(run_dir / rel)
        if not loaded:
            continue
        first_examples, class_names = next(iter(loaded.values()))
        shown = [e for e in first_examples if _pick_class(e, class_names) is not None][:rows]
        if not shown:
            continue
        names = list(loaded)
        cols = 2 + len(names)
        fig, axes = plt.subplots(len(shown), cols, figsize=(2.2 * cols + 0.8, 2.3 * len(shown) + 0.6), squeeze=False)
        image_artist = None
        for i, example in enumerate(shown):
            if _draw_example_row(axes[i], example, class_names, [loaded[name][0] for name in names]):
                image_artist = True
        for j, title in enumerate(["image", "ground truth"] + names):
            axes[0, j].set_title(title, fontsize=9)
        for ax in axes.flat:
            ax.set_xticks([])
            ax.set_yticks([])
        fig.suptitle(
            f"Example maps — {short_label(backbone)} on {short_label(dataset)}\n"
            "ground truth: the class region bright, the rest dimmed; outlines mark the region on every map",
            fontsize=9,
        )
        fig.tight_layout(rect=(0, 0, 0.9, 0.95))
        if image_artist is not None:
            from matplotlib.cm import ScalarMappable
            from matplotlib.colors import Normalize

            bar_ax = fig.add_axes((0.91, 0.15, 0.015, 0.7))
            colorbar = fig.colorbar(ScalarMappable(Normalize(0, 1), "jet"), cax=bar_ax)
            colorbar.set_label("map value (normalised per map)", fontsize=8)
        path = out / f"examples_{short_spec(backbone)}_{short_spec(dataset)}.png"  # no absolute path in the name
        fig.savefig(path, dpi=110)
        plt.close(fig)
        files.append(path)
    return files


def _draw_example_row(axes: Any, example: Example, class_names: list[str], per_explainer: list[list[Example]]) -> bool:
    """One row of :func:`example_grids`: ``example``'s image, its ground truth and each explainer's map of the
    example's largest present class (``per_explainer``: each explainer's examples); True when a map was drawn."""
    k = _pick_class(example, class_names)
    assert k is not None  # example_grids shows only examples with a class to pick
    cls = int(example.classes[k])
    truth = example.mask == cls
    axes[0].imshow(example.image, interpolation="nearest")
    axes[0].set_ylabel(f"{example.sample_id}\n“{class_names[cls]}”", fontsize=8)
    dimmed = np.where(truth[..., None], example.image, (0.3 * example.image).astype(np.uint8))
    axes[1].imshow(dimmed, interpolation="nearest")
    axes[1].contour(truth, levels=[0.5], colors="yellow", linewidths=1.2)
    drawn = False
    for ax, examples in zip(axes[2:], per_explainer, strict=True):
        match = next((e for e in examples if e.index == example.index), None)
        if match is None or cls not in list(match.classes):
            ax.text(0.5, 0.5, "no map", ha="center", va="center", transform=ax.transAxes)
            continue
        heat = match.maps[list(match.classes).index(cls)]
        ax.imshow(match.image, interpolation="nearest")
        ax.imshow(heat, cmap="jet", alpha=0.5, vmin=0, vmax=1, interpolation="bilinear")
        drawn = True
        ax.contour(truth, levels=[0.5], colors="white", linewidths=0.8)
    return drawn
