"""Reports: result records -> pandas tables -> Markdown / HTML / CSV, plots, merge, compare.

Reads only result records (``results.jsonl`` and ``run.json``); imports no backend.

- ``load``: results directories (several machines) -> DataFrames, validated;
- ``tables``: the report's tables (conformance, accuracy, special values, throughput, ...);
- ``plots``: matplotlib (Agg) PNGs; ``markdown`` / ``html_page``: the two layouts;
- ``build``: the ``report`` verb (``write_report``); ``main_job``: the ``run`` verb;
- ``compare``: the ``compare`` verb (throughput regression gate).
"""
