"""Isolation: worker processes that run the code under test, the channel to them, the scheduler
and the progress display. Nothing a worker says is believed without a check on the trusted side."""
