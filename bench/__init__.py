"""Benchmarks of the sweep against plain-asyncio and Prefect baselines: `python -m bench.run`."""
