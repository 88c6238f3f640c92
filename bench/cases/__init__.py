"""One module per op family, each defining ``CASES``: a list of :class:`bench.core.Case`."""
