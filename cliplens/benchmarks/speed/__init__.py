"""``cliplens speed``: how much slower than a plain image forward each explainer is, and its peak memory.

- :mod:`.command` — :func:`~.command.run_speed` (the protocol) and its report;
- :mod:`.measure` — synthetic inputs and the timed calls;
- :mod:`.memory` — the peak tensor memory of one call;
- :mod:`.tables` — the printed tables.
"""
