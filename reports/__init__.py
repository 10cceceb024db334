"""Reports: result records -> pandas tables -> Markdown / HTML / CSV, plots, merge, compare.

Reads only result records (``results.jsonl`` and ``run.json``); imports no backend.

- ``load``: results directories (several machines) -> DataFrames, validated;
- ``tables``: the report's tables (the first screen: conformance and speed per op x dtype, the
  ranking per workload; failures by cause, accuracy, special values, throughput, ...);
- ``stats``: intervals of the median from the timing samples; ``known``: known findings (the
  record's ``known`` field, backends/conventions.toml);
- ``plots``: matplotlib (Agg) PNGs; ``markdown`` / ``html_page``: the two layouts;
- ``build``: the ``report`` verb (``write_report``); the ``run`` verb is suite/cli/run.py;
- ``compare``: the ``compare`` verb (throughput regression gate).
"""
