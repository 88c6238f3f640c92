"""nbops' benchmark-and-parity report: ``python -m bench``. Cases live in ``bench/cases/<family>.py``."""
