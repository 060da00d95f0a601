"""The benchmark's defaults and built-in names, importable without torch (``cliplens bench --help``).

:data:`BUILTIN_DATASETS` / :data:`BUILTIN_METRICS` are what the built-in plugins register
(tests/cli/test_conventions.py keeps them equal to the registry); plugins may add more.
"""

DEFAULT_BACKBONE = "toy"
DEFAULT_DATASET = "shapes:test"
DEFAULT_METRICS: tuple[str, ...] = ("miou", "msc", "patchdis", "pointing_game")
DEFAULT_OUT = "runs/bench-default"
#: images of ``shapes:test`` in the no-argument run (fits in < 3 minutes on 2 CPU cores)
DEFAULT_LIMIT = 100
DEFAULT_BATCH_SIZE = 16

BUILTIN_DATASETS: tuple[str, ...] = ("coco-polygons", "imagenet-seg", "index-masks", "ovss", "shapes", "voc")
BUILTIN_METRICS: tuple[str, ...] = ("deletion", "insertion", "miou", "msc", "patchdis", "pointing_game")
