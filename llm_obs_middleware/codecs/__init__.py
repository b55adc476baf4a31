"""Stream framings, incremental and shared by every provider: SSE, NDJSON and the AWS event-stream."""
