"""pytest plugin entry point of softmaxbench (placeholder until the runner lands)."""
