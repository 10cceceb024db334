"""Throughput: workloads, device-aware timers, the measurement on pytest-benchmark."""
