"""Metrics, health endpoints and structured logs for every role."""
