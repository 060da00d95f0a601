"""The benchmark harness, by job: :mod:`.run` (``cliplens bench``), :mod:`.evaluation` (the data pass),
:mod:`.results` (files and identity), :mod:`.report` (``cliplens report``), :mod:`.protocols`
(published protocols and ``cliplens reproduce``), :mod:`.speed` (``cliplens speed``) and
:mod:`.matrix` (the explainer x backbone compatibility matrix of ``cliplens list``)."""
