"""Viewing sweeps: the report, the server that shows it, and the compare of two OUTs."""
