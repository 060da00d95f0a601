"""``cliplens demo [--host H] [--port P] [--backbone SPEC]``: the interactive page (Gradio) in a browser."""

from __future__ import annotations

import argparse

from ..errors import CliplensError, InputError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="an interactive page: pick an image, type texts, see the explainers' maps",
        description=(
            "Serve the interactive page (Gradio) and print its address: upload or pick an image, type texts, "
            "choose a backbone and explainers, and see the maps side by side. Needs the demo extra: "
            "pip install 'cliplens[demo]'. The same page runs as a Hugging Face Space (docs/space/app.py)."
        ),
    )
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0: reachable from other machines)")
    p.add_argument("--port", type=int, default=None, help="port (default: the first free one from 7860)")
    p.add_argument("--backbone", "-b", default="toy", metavar="SPEC", help="the backbone chosen when the page opens")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..demo.ui import launch, missing_gradio_message

    missing = missing_gradio_message()
    if missing:
        raise CliplensError(missing)  # exit 2, one line: the extra to install
    if args.port is not None and not 0 < args.port < 65536:
        raise InputError(f"--port {args.port} is not a port: use 1 to 65535, or leave it out")
    launch(args.host, args.port, backbone=args.backbone, block=True)
    return 0
