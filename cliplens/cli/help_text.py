"""What ``cliplens --help`` and each ``cliplens COMMAND --help`` show, kept here so that start-up
imports nothing heavy: the command table, the examples and the help formatter.

A new command joins with one line in :data:`COMMANDS` (its one-line summary; the module is
``cliplens.cli.cmd_<name>`` with ``add_parser(subparsers)`` and ``run(args)``) and its examples
in :data:`EXAMPLES`; tests/cli/test_conventions.py checks that each is there and true.
"""

from __future__ import annotations

import argparse
import re
from typing import Any, NoReturn

#: command -> one-line summary, in the order ``cliplens --help`` lists them. Only the command that
#: runs has its module imported; the others appear under this summary.
COMMANDS: dict[str, str] = {
    "plugins": "show loaded plugins and what they registered",
    "list": "list registered backbones, explainers, datasets, metrics or auxiliaries",
    "explain": "draw explainers' heat maps for images and texts",
    "bench": "score explainers on segmentation data (no arguments: the toy default run)",
    "report": "merge benchmark results into a leaderboard, CSV, figures and index.html",
    "reproduce": "re-run a published table (named preset) and print measured beside published figures",
    "toy": "toy world: train / sample / evaluate the tiny shapes CLIP",
    "concepts": "SpLiCE: the concepts (and weights) that make up image and text embeddings",
    "textspan": "describe attention heads with texts (TextSpan) and ablate heads",
    "ablate": "mean-ablate MLPs, attention layers, heads or neurons; report zero-shot accuracy",
    "neurons": "second-order effects of MLP neurons: fit, describe with texts, show",
    "sae": "sparse autoencoders on a layer's residual stream: train, evaluate, convert",
    "speed": "time explainers against a plain image forward",
    "demo": "an interactive page: pick an image, type texts, see the explainers' maps",
}

#: command -> example command lines shown at the end of its --help
EXAMPLES: dict[str, list[str]] = {
    "plugins": ["cliplens plugins", "cliplens plugins --json"],
    "list": [
        "cliplens list explainers",
        "cliplens list backbones 'ViT-B-*'",
        "cliplens list metrics --details",
        "cliplens list auxiliaries '*dino*'",
    ],
    "explain": [
        'cliplens explain photo.jpg --text "a car" "a tree"',
        'cliplens explain --text "a dog" -e clip_surgery lexical -o out/ a.jpg b.jpg',
        'cliplens explain street.png -t "a bus" -b ViT-B-16:/weights/ViT-B-16.safetensors --device cuda',
    ],
    "bench": [
        "cliplens bench",
        "cliplens bench -b ViT-B-16:openai -d voc:/data/VOC2012 -o runs/voc",
        'cliplens bench -b toy -e lexical gradcam -d "index-masks:/data/camvid?ignore=11&split=test" -o runs/c',
        "cliplens bench -o runs/voc --skip-existing -b ViT-B-16:openai -d voc:/data/VOC2012",
    ],
    "report": ["cliplens report runs/bench-default", "cliplens report runs/voc   # then open runs/voc/index.html"],
    "reproduce": [
        "cliplens reproduce --list",
        "cliplens reproduce ovss-vit-b16 --data-root /data --weights /ckpt/ViT-B-16.pt",
        "cliplens reproduce ovss-vit-b16 --data-root /data --weights /ckpt/ViT-B-16.pt "
        "--auxiliary vit_base_patch8_224.dino=/ckpt/dino_vitbase8_pretrain.pth --protocol paper",
    ],
    "demo": ["cliplens demo", "cliplens demo --backbone ViT-B-16:openai --port 8000"],
    "toy": ["cliplens toy sample --out scenes -n 8", "cliplens toy eval", "cliplens toy train --out toy.safetensors"],
    "concepts": [
        "cliplens concepts scene.png --vocabulary words.txt",
        "cliplens concepts photo.jpg -b ViT-B-16:openai --image-mean /data/coco/train2017 --top 15",
        'cliplens concepts --text "a red circle" --json',
    ],
    "textspan": [
        "cliplens textspan -d shapes:test -o runs/textspan",
        "cliplens textspan -b ViT-B-16:openai --images /data/photos -o runs/ts --layers 8 9 10 11",
    ],
    "ablate": ["cliplens ablate -d shapes:test --mlps", "cliplens ablate -d shapes:test --heads 4.0 5.1 --each"],
    "neurons": [
        "cliplens neurons fit -d shapes:train -o runs/neurons/toy-l1 --describe",
        "cliplens neurons show runs/neurons/toy-l1 --text 'a photo of a red shape.'",
        "cliplens neurons fit -b ViT-B-16:openai --images /data/photos -o runs/neurons/b16-l9 --layer 9",
    ],
    "sae": [
        "cliplens sae train -d shapes:train --layer 2 --expansion 8 --k 8 --steps 300 --batch-size 1024 -o runs/sae",
        "cliplens sae train -o runs/sae --resume --steps 600",
        "cliplens sae eval runs/sae -d shapes:test",
        "cliplens sae convert /ckpt/saelens-sae --from saelens -o runs/converted",
    ],
    "speed": ["cliplens speed -e raw_similarity clip_surgery --backbone toy"],
}

MAIN_EPILOG = """examples:
  cliplens bench                                  # the toy benchmark, in seconds
  cliplens explain photo.jpg --text "a dog"       # heat maps into ./cliplens-explain
  cliplens COMMAND --help                         # each command's options, defaults and examples
  python -m cliplens ...                          # the same command (e.g. under torchrun)"""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and examples as written; each option's default appended when it has one
    (not for flags, ``None`` or help that already names its default)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            default is None
            or default is False
            or default is argparse.SUPPRESS
            or "default" in text
            or not (action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE))
        ):
            return text
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        return f"{text} (default: {shown})"


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose help uses :class:`HelpFormatter` unless told otherwise, and whose usage errors
    (``--limit abc``, a missing required option) are one line pointing at ``--help``, not the usage block."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def format_help(self) -> str:
        """The help text; docstring-style ````code```` (e.g. in a description taken from ``__doc__``) as `code`."""
        return plain(super().format_help())

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def plain(docstring: str) -> str:
    """A docstring's reStructuredText literals shown as the CLI's messages write them: ````code```` -> `code`."""
    return re.sub(r"``(.+?)``", r"`\1`", docstring)


def examples_epilog(command: str) -> str | None:
    lines = EXAMPLES.get(command)
    return "examples:\n" + "\n".join(f"  {line}" for line in lines) if lines else None
