"""Reports: result records -> pandas tables -> Markdown / HTML / CSV, plots, merge, compare.

Reads only result records (``results.jsonl`` and ``run.json``); imports no backend."""
