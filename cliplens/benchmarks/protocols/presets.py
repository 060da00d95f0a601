"""Named presets for published tables (``cliplens reproduce NAME``): what to run, on what, and the figures to compare.

A preset names a task (``explainability`` through ``cliplens bench``, ``imagenet-seg`` or
``ovss``), the weights it needs, the methods (resolved at run time from the explainer
registry: a method whose explainer is not registered is listed as unavailable), the
datasets as folders under ``--data-root``, and a published-figures file shipped in
``cliplens/resources/published/`` (paper, table, arXiv id, model, figures).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ...errors import InputError

__all__ = [
    "AuxiliaryNeed",
    "Method",
    "DataSpec",
    "Preset",
    "PRESETS",
    "get_preset",
    "published",
    "available_methods",
]


@dataclass(frozen=True)
class AuxiliaryNeed:
    """An auxiliary backbone a method's published figures were obtained with (ProxyCLIP's DINO).

    Attributes:
        option: the explainer option that names it (``proxy``).
        name: its registered auxiliary name (``vit_base_patch8_224.dino``; ``cliplens list auxiliaries``).
        hint: which weights, and where they come from.
        pipeline: the random-init spec run under ``--backbone`` (a pipeline check); "" for ``name`` itself, None to
            leave the option at the explainer's default (CASS shapes its random DINO to the CLIP tower).
    """

    option: str
    name: str
    hint: str
    pipeline: str | None = ""


@dataclass(frozen=True)
class Method:
    """One row of a published table: its label, the cliplens explainer that computes it, its options and the
    auxiliary backbones whose weights it needs (``reproduce --auxiliary NAME=PATH``)."""

    label: str
    explainer: str
    options: tuple[tuple[str, Any], ...] = ()
    auxiliaries: tuple[AuxiliaryNeed, ...] = ()


@dataclass(frozen=True)
class DataSpec:
    """One column group: a dataset spec ``template`` with ``{root}`` for a folder under ``--data-root``."""

    key: str
    template: str
    folder: str
    layout: str

    def spec(self, data_root: Path) -> str:
        return self.template.format(root=(data_root / self.folder) if self.folder else data_root)

    def path(self, data_root: Path) -> Path:
        return data_root / self.folder if self.folder else data_root


@dataclass(frozen=True)
class Preset:
    """A published table cliplens can re-run."""

    name: str
    title: str
    task: str
    arch: str
    weights_hint: str
    methods: tuple[Method, ...]
    datasets: tuple[DataSpec, ...]
    published_file: str
    metrics: tuple[str, ...] = ()

    def weights_spec(self, weights: str | None) -> str:
        """``--weights`` -> a backbone spec: a local file (``ARCH:PATH``), a full ``ARCH:X`` spec, or a tag."""
        if not weights:
            raise InputError(
                f"preset {self.name} needs {self.weights_hint}: pass --weights /path/to/checkpoint "
                f"(or --weights TAG to let open_clip download it, e.g. --weights "
                f"{self.arch.split(':')[0]}:{self.default_tag})"
            )
        path = Path(weights).expanduser()
        if path.is_file():
            return f"{self.arch}:{path}"
        if ":" in weights:
            return weights
        if "/" in weights or path.suffix in (".pt", ".bin", ".safetensors", ".pth"):
            raise InputError(f"--weights {weights}: no such file; pass the checkpoint of {self.weights_hint}")
        return f"{self.arch}:{weights}"

    @property
    def default_tag(self) -> str:
        return "openai" if "quickgelu" in self.arch else "laion2b_s32b_b79k"


_OVSS_FOLDERS = {
    "voc21": ("VOCdevkit/VOC2012", "JPEGImages/, SegmentationClass/, ImageSets/Segmentation/val.txt"),
    "context60": ("VOCdevkit/VOC2010", "JPEGImages/, SegmentationClassContext/, ImageSets/SegmentationContext/val.txt"),
    "coco_object": ("coco_object", "images/val2017/*.jpg, annotations/val2017/*.png"),
    "voc20": ("VOCdevkit/VOC2012", "as voc21"),
    "context59": ("VOCdevkit/VOC2010", "as context60"),
    "coco_stuff": ("coco_stuff164k", "images/val2017/*.jpg, annotations/val2017/*_labelTrainIds.png"),
    "cityscapes": ("cityscapes", "leftImg8bit/val/*/, gtFine/val/*/*_gtFine_labelTrainIds.png"),
    "ade20k": ("ade/ADEChallengeData2016", "images/validation/*.jpg, annotations/validation/*.png"),
}

#: Trident's DINO and SAM (the release's torch.hub ``dino_vitb16`` and ``sam_vit_b_01ec64.pth``); random tiny ones
#: with 8-px DINO patches for a pipeline check (finer than any CLIP's, as Trident stitches at DINO's resolution)
_TRIDENT_AUXILIARIES = (
    AuxiliaryNeed(
        "dino",
        "vit_base_patch16_224.dino",
        "DINO ViT-B/16 (Trident's dino_vitb16: dino_vitbase16_pretrain.pth from github.com/facebookresearch/dino)",
        "vit_small_patch8_224.dino?depth=2&embed_dim=64&num_heads=2",
    ),
    AuxiliaryNeed(
        "sam",
        "samvit_base_patch16.sa1b",
        "SAM ViT-B image encoder (sam_vit_b_01ec64.pth from github.com/facebookresearch/segment-anything)",
        "samvit_base_patch16.sa1b?img_size=128&depth=3&embed_dim=64&num_heads=2",
    ),
)

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "clip-surgery-voc",
            "CLIP Surgery explainability: mIoU / mSC on PASCAL VOC 2012 val (Li et al.)",
            "explainability",
            "ViT-B-16-quickgelu",
            "OpenAI CLIP ViT-B/16 weights (ViT-B-16.pt)",
            (Method("clip", "raw_similarity"), Method("clip_surgery", "clip_surgery")),
            (
                DataSpec(
                    "voc",
                    "voc:{root}?split=val",
                    "VOCdevkit/VOC2012",
                    "JPEGImages/, SegmentationClass/, ImageSets/Segmentation/val.txt",
                ),
            ),
            "clip_surgery_voc.json",
            metrics=("miou", "msc"),
        ),
        Preset(
            "textspan-imagenet-seg",
            "TextSpan decomposition on ImageNet-segmentation (Gandelsman et al., ICLR 2024)",
            "imagenet-seg",
            "ViT-H-14",
            "OpenCLIP ViT-H-14 weights (laion2b_s32b_b79k)",
            (Method("decomposition", "decomposition"),),
            (
                DataSpec(
                    "imagenet_seg",
                    "imagenet-seg:{root}",
                    "gtsegs_ijcv.mat",
                    "gtsegs_ijcv.mat (Chefer et al.'s 4,276 images with masks)",
                ),
            ),
            "textspan_imagenet_seg.json",
        ),
        Preset(
            "ovss-vit-b16",
            "Training-free open-vocabulary segmentation, CLIP ViT-B/16, eight benchmarks (Trident table)",
            "ovss",
            "ViT-B-16-quickgelu",
            "OpenAI CLIP ViT-B/16 weights (ViT-B-16.pt)",
            (
                Method("clip", "raw_similarity"),
                Method("maskclip", "maskclip"),
                Method("sclip", "sclip"),
                Method("clearclip", "clearclip"),
                Method("naclip", "naclip"),
                Method("gem", "gem"),
                Method("scclip", "scclip"),
                Method("resclip", "resclip"),
                Method("resclip_sclip", "resclip", (("base", "sclip"),)),
                Method("resclip_clearclip", "resclip", (("base", "clearclip"),)),
                Method("legrad", "legrad"),
                Method("chefer", "chefer"),
                Method("rollout", "rollout"),
                Method(
                    "proxyclip",
                    "proxyclip",
                    auxiliaries=(
                        AuxiliaryNeed(
                            "proxy",
                            "vit_base_patch8_224.dino",
                            "DINO ViT-B/8 (ProxyCLIP's default VFM, dino_vitb8: dino_vitbase8_pretrain.pth from "
                            "github.com/facebookresearch/dino, or timm's vit_base_patch8_224.dino weights)",
                        ),
                    ),
                ),
                Method("trident", "trident", auxiliaries=_TRIDENT_AUXILIARIES),
                Method(
                    "cass",
                    "cass",
                    auxiliaries=(
                        AuxiliaryNeed(
                            "auxiliary",
                            "vit_base_patch8_224.dino",
                            "DINO ViT-B/8 (CASS's dino_vitb8: dino_vitbase8_pretrain.pth from "
                            "github.com/facebookresearch/dino, Caron et al. 2021)",
                            None,
                        ),
                    ),
                ),
            ),
            tuple(
                DataSpec(k, f"ovss:{{root}}?name={k}", folder, layout) for k, (folder, layout) in _OVSS_FOLDERS.items()
            ),
            "ovss_vit_b16.json",
        ),
    )
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise InputError(f"no preset {name!r}: choose one of {', '.join(PRESETS)} (cliplens reproduce --list)")
    return PRESETS[name]


def published(preset: Preset) -> dict[str, Any]:
    """The preset's published-figures file, with ``figures[method][column]`` filled in (None = not published)."""
    text = resources.files("cliplens.resources").joinpath(f"published/{preset.published_file}").read_text("utf-8")
    data = json.loads(text)
    figures: dict[str, dict[str, float | None]] = {}
    for row in data["rows"]:
        values = row.get("figures")
        figures[row["method"]] = {c: (values[i] if values else None) for i, c in enumerate(data["columns"])}
    data["figures"] = figures
    data["by_method"] = {row["method"]: row for row in data["rows"]}
    return data


def available_methods(preset: Preset) -> dict[str, bool]:
    """Per method label, whether its explainer is registered in this install."""
    from ...registry import get_registry

    names = {e.name for e in get_registry().catalog("explainer").entries()}
    return {m.label: m.explainer in names for m in preset.methods}


def auxiliary_options(
    method: Method, given: dict[str, str], *, override: bool
) -> tuple[dict[str, str], str | None, list[str]]:
    """The explainer options that name ``method``'s auxiliary backbones, from ``given`` (``{name: PATH or
    "pretrained"}``, ``reproduce --auxiliary NAME=PATH``).

    Returns ``(options, why_not, notes)``: ``why_not`` is a reason not to run the method (a needed weights file
    not given, and the published model runs); with ``override`` (``--backbone``, a pipeline check) a missing one
    is a random initialisation, said in ``notes``.
    """
    options: dict[str, str] = {}
    notes: list[str] = []
    for need in method.auxiliaries:
        if need.name in given:
            options[need.option] = f"{need.name}:{given[need.name]}"
        elif override:
            if need.pipeline is not None:
                options[need.option] = need.pipeline or need.name
            notes.append(f"{method.label}: auxiliary {need.name} random-init (pipeline check, not the published VFM)")
        else:
            return {}, f"needs {need.hint}: pass --auxiliary {need.name}=PATH (or ={'pretrained'}: timm's download)", []
    return options, None, notes


def check_auxiliary_weights(preset: Preset, given: dict[str, str]) -> None:
    """Refuse, in one line and before any work, an ``--auxiliary`` name no method of ``preset`` needs and a path
    that is not a file."""
    needed = {need.name for method in preset.methods for need in method.auxiliaries}
    for name, value in given.items():
        if name not in needed:
            known = ", ".join(sorted(needed)) or "none"
            raise InputError(f"--auxiliary {name}: preset {preset.name} needs no such auxiliary (it needs: {known})")
        if value != "pretrained" and not Path(value).expanduser().is_file():
            raise InputError(f"--auxiliary {name}={value}: no such file; pass the weights file or =pretrained")
