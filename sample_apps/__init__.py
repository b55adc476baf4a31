"""Runnable examples (see README): each runs against the fake provider on 127.0.0.1:9100."""
