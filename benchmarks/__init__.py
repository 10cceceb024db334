"""Measurements of softmaxbench itself (not shipped in the package), run from the checkout:

    python -m benchmarks.reference_speed    # how fast the reference is
    python -m benchmarks.verdict_speed      # how fast a full / quick check is
    python -m benchmarks.bench_fidelity     # harness overhead and run-to-run agreement
"""
