"""The demo page (Gradio Blocks) and how it is served: ``build_app()`` for a Space, ``launch()`` for
``cliplens demo``. Everything it draws comes from :mod:`.figures`.

The page loads nothing from outside its own server: the theme uses the system's fonts (Gradio's
default fetches Google Fonts), analytics are off and server-side rendering (which needs Node) is not used.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CliplensError
from ..registry import list_explainers
from .figures import DEFAULT_BACKBONES, DEFAULT_EXPLAINERS, example_scenes, explain_figure, parse_texts

if TYPE_CHECKING:
    import gradio as gr
    from PIL import Image

TITLE = "cliplens: where in the image does a text match?"
INTRO = (
    "Upload an image (or pick a toy scene below), type what to look for, one text per line, choose a "
    "backbone and explainers, then **Explain**. Each row is a text, each column an explainer's map over "
    "the image; every map is min–max normalised on its own (the colour bar), so compare where maps are "
    "high, not how high. `toy` is the tiny CLIP of cliplens' shapes world (instant, offline); "
    "`ViT-B-16:openai` downloads OpenAI's weights on first use; `ViT-B-16` alone is randomly initialised."
)
#: where the example scenes are written (shared by every page of this process)
EXAMPLES_FOLDER = Path(tempfile.gettempdir()) / "cliplens-demo-examples"


def missing_gradio_message() -> str | None:
    """None when Gradio can be imported, else the one line that says how to install it."""
    import importlib.util

    if importlib.util.find_spec("gradio") is None:
        return "the demo needs Gradio, which is not installed: pip install 'cliplens[demo]'"
    return None


def answer(image: Image.Image | None, text: str, backbone: str, explainers: Sequence[str]) -> tuple[Image.Image, str]:
    """The page's handler: (figure, notes as Markdown); a user error becomes Gradio's one-line error box."""
    import gradio as gr

    try:
        result = explain_figure(image, parse_texts(text), backbone, list(explainers or []))
    except CliplensError as exc:
        raise gr.Error(str(exc)) from None
    return result.figure, "\n".join(f"- {line}" for line in result.notes)


def build_app(backbones: Sequence[str] = DEFAULT_BACKBONES, backbone: str = "toy") -> gr.Blocks:
    """The demo page: inputs on the left (image, texts, backbone, explainers, the toy scenes to pick
    from), the figure of maps and its notes on the right."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    scenes = example_scenes(EXAMPLES_FOLDER)
    explainers = list_explainers()
    with gr.Blocks(title="cliplens demo", analytics_enabled=False) as app:
        gr.Markdown(f"# {TITLE}\n{INTRO}")
        with gr.Row():
            with gr.Column(scale=2):
                image = gr.Image(type="pil", label="image", sources=["upload", "clipboard"], elem_id="image")
                text = gr.Textbox(
                    label="texts (one per line)", lines=3, value=scenes[0][1], elem_id="texts", max_lines=8
                )
                chosen_backbone = gr.Dropdown(
                    list(backbones), value=backbone, label="backbone", allow_custom_value=True, elem_id="backbone"
                )
                chosen = gr.CheckboxGroup(
                    explainers,
                    value=[name for name in DEFAULT_EXPLAINERS if name in explainers],
                    label="explainers",
                    elem_id="explainers",
                )
                run = gr.Button("Explain", variant="primary", elem_id="explain")
                gr.Examples([[str(path), texts] for path, texts in scenes], inputs=[image, text], label="toy scenes")
            with gr.Column(scale=3):
                figure = gr.Image(type="pil", label="maps", format="png", interactive=False, elem_id="maps")
                notes = gr.Markdown(elem_id="notes")
        run.click(answer, inputs=[image, text, chosen_backbone, chosen], outputs=[figure, notes])
    return app


def theme() -> gr.themes.Base:
    """Gradio's default look with the system's fonts instead of Google Fonts (no network)."""
    import gradio as gr

    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])


def launch(
    host: str | None = "127.0.0.1", port: int | None = None, *, backbone: str = "toy", block: bool = True
) -> tuple[gr.Blocks, str]:
    """Serve the page on ``host:port``; ``(app, local URL)``. ``host`` None: Gradio's choice
    (``$GRADIO_SERVER_NAME``, which a Hugging Face Space sets to 0.0.0.0, else 127.0.0.1); ``port`` None:
    ``$GRADIO_SERVER_PORT``, else the first free one from 7860. With ``block`` it serves until
    interrupted; without, it returns at once (tests: ``app.close()``)."""
    app = build_app(backbone=backbone)
    options: dict[str, Any] = {
        "server_name": host,
        "server_port": port,
        "prevent_thread_lock": True,  # serving goes on in Gradio's thread; `block` waits below
        "inbrowser": False,
        "share": False,
        "quiet": True,  # its banner suggests share=True, which this command does not offer
        "ssr_mode": False,
        "mcp_server": False,
        "footer_links": [],
        "allowed_paths": [str(EXAMPLES_FOLDER)],
        "theme": theme(),
    }
    _, url, _ = app.launch(**options)
    if block:
        print(f"cliplens demo: open {url} in a browser (Ctrl-C to stop)", flush=True)
        app.block_thread()
    return app, url
