"""Prometheus metrics built from records, and the router's live state as gauges."""
