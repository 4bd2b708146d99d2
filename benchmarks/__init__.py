"""The benchmark suite: ``python -m benchmarks [--quick]`` (``make bench``).

One module per measurement (placement, relay, end_to_end, failover, scale), the
isolated system they run against (system), the HTTP load generator (load) and the
report (report: results JSON → BENCHMARKS.md with plots). See BENCHMARKS.md.
"""
