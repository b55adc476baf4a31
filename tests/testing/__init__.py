"""Tests of llm_obs_middleware.testing (the fake provider and the background server)."""
