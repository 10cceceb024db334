"""The command line: ``main`` (the click group and exit codes), ``options`` (shared flags), and one
module per verb (``list``, ``cases``, ``check``, ``bench``, ``report``, ``compare``, ``run``, ``hunt``)."""
