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

__all__ = ["Method", "DataSpec", "Preset", "PRESETS", "get_preset", "published", "available_methods"]


@dataclass(frozen=True)
class Method:
    """One row of a published table: its label and the cliplens explainer that computes it."""

    label: str
    explainer: str
    options: tuple[tuple[str, Any], ...] = ()
    #: the auxiliary backbone weights the method needs (``reproduce --auxiliary SPEC``), in words; "" for none
    auxiliary: str = ""


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
                Method(
                    "cass",
                    "cass",
                    auxiliary="DINO ViT-B/8 (dino_vitbase8_pretrain.pth, Caron et al. 2021), "
                    "spec vit_base_patch8_224.dino:PATH",
                ),
                Method("gem", "gem"),
                Method("legrad", "legrad"),
                Method("chefer", "chefer"),
                Method("rollout", "rollout"),
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
