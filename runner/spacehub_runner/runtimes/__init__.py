"""Runtimes: start, stop, poll and read the logs of built artifacts (see `spacehub_runner.plugs`)."""
