"""cliplens' interactive demo as a Hugging Face Space (Gradio SDK): the page of ``cliplens demo``.

Push this folder (app.py, requirements.txt, README.md with the Space's settings) to a new Space:

    git clone https://huggingface.co/spaces/YOU/cliplens && cp docs/space/* cliplens/ && cd cliplens
    git add . && git commit -m "cliplens demo" && git push

Locally, the same page: ``pip install 'cliplens[demo]' && python app.py`` (or ``cliplens demo``).
"""

from cliplens.demo.ui import launch

if __name__ == "__main__":
    # host and port None: the Space's GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (0.0.0.0:7860), else 127.0.0.1
    launch(host=None, port=None)
