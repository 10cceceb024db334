"""The suite: conformance checks, benchmark harness, runner (isolation, records), pytest plugin, CLI."""
