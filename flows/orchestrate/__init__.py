"""Prefect around the engine: the flow, shards, cancellation, what the UI shows, and the nightly compare."""
