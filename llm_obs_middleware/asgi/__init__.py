"""ASGI plumbing shared by every layer: type aliases, body reading and replay, JSON errors, per-request state."""
