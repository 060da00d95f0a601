"""The data pass: every image read once, explained by each explainer of the backbone, fed to its metrics.

- :mod:`.data_pass` — :class:`~.data_pass.DataPass`, the pass over the images for several lanes;
- :mod:`.lanes` — one explainer's lane (its metrics, outcome and random stream);
- :mod:`.sample_reader` — samples read and checked in order (optionally by DataLoader workers);
- :mod:`.metric_inputs` — from an explain call to the metrics' inputs, maps made on demand;
- :mod:`.mask_resolution` — ``--metric-resolution``: masks bounded as they are read.
"""
