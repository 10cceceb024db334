"""The suite, in rooms: ``records`` (results and their schema), ``conformance``, ``isolation``,
``bench``, ``hunt`` and ``cli`` (one module per verb). See docs/internals.md for the map."""
