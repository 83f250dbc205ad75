"""Front-end benchmark in a real browser: first render of a long history and one live tick.

Run: ``python -m benchmarks.frontend`` (see :mod:`benchmarks.frontend.page`). ``store.bench.ts`` next to it is
the vitest micro-benchmark of the store alone (``npm run bench``).
"""
