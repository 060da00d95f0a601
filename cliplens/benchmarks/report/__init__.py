"""``cliplens report``: the leaderboard, CSV files, figures and HTML page of a result folder.

- :mod:`.leaderboard` — markdown tables, footnotes and CSV files; :func:`~.leaderboard.write_report`;
- :mod:`.scores` — score lookups and grouping shared by the tables and figures;
- :mod:`.figures` — bar charts and example grids;
- :mod:`.html_page` — the self-contained ``index.html``.
"""
