"""``cliplens bench``: a run over (backbone, explainer) pairs, from its checked config to one result file per pair.

- :mod:`.config` — :class:`~.config.BenchConfig` (what was asked) and its check before anything is built;
- :mod:`.plan` — the datasets opened, the images chosen, each pair's config and identity, ``--skip-existing``;
- :mod:`.runner` — the output folder held for the run, the backbones loaded, the result files written;
- :mod:`.pair_scoring` — the explainers of one backbone scored and each pair's result built;
- :mod:`.sharded_pass` / :mod:`.distributed` — this process's shard of the images, merged over torchrun ranks;
- :mod:`.threshold_plan`, :mod:`.pair_timing`, :mod:`.skip_reasons` — threshold selection split, timings, skips.
"""
