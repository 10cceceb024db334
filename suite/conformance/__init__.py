"""Conformance: the ``check_<property>`` functions, the judgement of one output, the plan of a run,
the pytest plugin, JUnit output and repro snippets. Judgement happens only in the trusted process."""
