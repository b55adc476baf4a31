"""OTLP export: GenAI spans (encoded here, sent over HTTP or gRPC), GenAI metrics, OpenInference attributes."""
