"""Published evaluation protocols, each a self-contained loop over a dataset with its own metrics.

- :mod:`.imagenet_seg` — ImageNet-segmentation (Chefer et al., CVPR 2021 / ICCV 2021; TextSpan, ICLR 2024).
- :mod:`.ovss` — open-vocabulary semantic segmentation (MaskCLIP, SCLIP, ClearCLIP, NACLIP; mmseg configs), with
  its settings (:mod:`.ovss_settings`) and window scoring (:mod:`.ovss_windows`); :mod:`.ovss_methods` — each
  method's own published settings (``cliplens reproduce --protocol paper``).
- :mod:`.multilabel` — multi-label recognition with and without feature surgery (CLIP Surgery).
- :mod:`.presets` — the published tables ``cliplens reproduce`` re-runs; :mod:`.reproduce` runs one
  (its explainability presets through :mod:`cliplens.benchmarks.run`) and :mod:`.reproduce_report` sets the
  numbers beside the paper's.

Each protocol returns a result dict with the protocol's numbers and a ``protocol`` card
(every setting that decides the numbers), written beside the ``bench`` results.
"""
