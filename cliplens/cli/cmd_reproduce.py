"""``cliplens reproduce NAME --data-root DIR [--weights ...]``: re-run a published table;
``--list`` shows the presets."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "reproduce",
        help="re-run a published table (named preset) and print measured beside published figures",
        description="Run a named preset for a published table and print the measured figures beside the published "
        "ones with the difference. `cliplens reproduce --list` shows the presets, what each needs "
        "(weights, data layout) and which of its methods this install has.",
    )
    p.add_argument("name", nargs="?", metavar="NAME", help="preset name (see --list)")
    p.add_argument("--list", action="store_true", help="list the presets and what each needs")
    p.add_argument("--data-root", metavar="DIR", help="folder holding the preset's datasets (layout: --list)")
    p.add_argument("--weights", metavar="PATH|TAG|ARCH:X", help="checkpoint file, open_clip tag, or full spec")
    p.add_argument(
        "--backbone",
        metavar="SPEC",
        help="run another backbone instead of the published one (e.g. toy: a pipeline check)",
    )
    p.add_argument(
        "--protocol",
        choices=("common", "paper"),
        default="common",
        help="common: every method under the preset's one protocol (default); paper: OVSS presets run each method "
        "under its authors' published settings (windows, short side, input size, logit scale, thresholds, PAMR, "
        "dtype), printed with what differs from the common protocol",
    )
    p.add_argument(
        "--auxiliary",
        metavar="SPEC",
        help="the auxiliary backbone (DINO) of the methods that need one (--list names them), e.g. "
        "vit_base_patch8_224.dino:/ckpt/dino_vitbase8_pretrain.pth; default: random-initialised",
    )
    p.add_argument("--only", metavar="KEY,...", help="run only these datasets of the preset")
    p.add_argument("--limit", type=int, default=None, help="score only the first N images of each dataset")
    p.add_argument("--prompt-templates", metavar="FILE", help="prompt templates (default: the protocol's own)")
    p.add_argument("--out", "-o", metavar="DIR", help="result folder (default runs/reproduce-NAME)")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default cpu)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(run=run)


def list_presets() -> str:
    """The presets, what each needs and which methods are available."""
    from ..benchmarks.protocols.presets import PRESETS, available_methods, published

    lines = []
    for preset in PRESETS.values():
        reference = published(preset)
        available = available_methods(preset)
        lines.append(f"{preset.name}: {preset.title}")
        lines.append(
            f"  task: {preset.task}; weights: {preset.weights_hint} -> --weights PATH "
            f"(spec {preset.arch}:PATH) or --weights {preset.default_tag}"
        )
        lines.append(
            "  data under --data-root: "
            + "; ".join(f"{d.key} = {d.folder or '.'} ({d.layout})" for d in preset.datasets)
        )
        lines.append(
            "  methods: "
            + ", ".join(f"{label}{'' if ok else ' (not registered here)'}" for label, ok in available.items())
        )
        if preset.task == "ovss":
            from ..benchmarks.protocols.ovss_methods import METHOD_PROTOCOLS

            lines.append(
                "  protocols: common (every method, SCLIP's configs; default), paper (--protocol paper: "
                f"{', '.join(METHOD_PROTOCOLS)} under their authors' own settings, the others as common)"
            )
        needing = [f"{m.label}: {m.auxiliary}" for m in preset.methods if m.auxiliary]
        if needing:
            lines.append("  auxiliary weights (--auxiliary SPEC; random-initialised without): " + "; ".join(needing))
        with_figures = [m for m, row in reference["figures"].items() if any(v is not None for v in row.values())]
        lines.append(
            f"  published: {reference['paper']} — {reference['table']} (arXiv {reference['arxiv']}); "
            f"figures for {', '.join(with_figures) or 'none (no verified figure shipped)'}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import InputError

    if args.list:
        print(list_presets())
        return 0
    if not args.name:
        raise InputError("name a preset (cliplens reproduce NAME --data-root DIR --weights PATH) or pass --list")
    from ..benchmarks.prompts import load_templates
    from ..benchmarks.protocols.presets import get_preset
    from ..benchmarks.protocols.reproduce import comparison_markdown, run_preset

    preset = get_preset(args.name)
    templates = load_templates(args.prompt_templates) if args.prompt_templates else None
    only = [k.strip() for k in args.only.split(",") if k.strip()] if args.only else None
    result = run_preset(
        preset,
        args.data_root,
        weights=args.weights,
        backbone=args.backbone,
        only=only,
        limit=args.limit,
        templates=templates,
        out=Path(args.out or f"runs/reproduce-{preset.name}"),
        device=args.device,
        progress=not args.no_progress,
        protocol=args.protocol,
        auxiliary=args.auxiliary,
    )
    print(comparison_markdown(result))
    print(f"{len(result.files)} result files in {args.out or f'runs/reproduce-{preset.name}'}/")
    return 0
