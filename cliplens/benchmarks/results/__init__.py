"""What a benchmark writes and reads back: result files, their identity, example maps and protocol cards.

- :mod:`.pair_result` — :class:`~.pair_result.PairResult`, one pair's result, and its JSON;
- :mod:`.files` — atomic writes, reading result folders, pair ids, library versions;
- :mod:`.identity` — what a result's numbers depend on, and what differs from an earlier one;
- :mod:`.examples` — example maps saved for the report;
- :mod:`.protocol_card` — the settings that decide the numbers, per result;
- :mod:`.output_lock` — one run per output folder.
"""
