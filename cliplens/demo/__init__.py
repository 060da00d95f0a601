"""``cliplens demo``: an interactive page to explain CLIP models (Gradio; ``pip install 'cliplens[demo]'``).

Upload or pick an image, type texts, choose a backbone and explainers, and see each explainer's map
of each text side by side with the colour bar. It runs locally (``cliplens demo``) and as a Hugging
Face Space (``docs/space/app.py``).

- :mod:`.figures`: the explaining and drawing behind the page (no Gradio needed; tested on its own);
- :mod:`.ui`: the Gradio page (``build_app``) and ``launch``.
"""

from __future__ import annotations

from .figures import DEFAULT_BACKBONES, DEFAULT_EXPLAINERS, DemoResult, explain_figure, parse_texts

__all__ = ["DEFAULT_BACKBONES", "DEFAULT_EXPLAINERS", "DemoResult", "explain_figure", "parse_texts"]
