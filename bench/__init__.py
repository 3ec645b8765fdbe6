"""The gateway's performance benchmark (issue 9): ``python -m bench.run``. See docs/performance.md."""
