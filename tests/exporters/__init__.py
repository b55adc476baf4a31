"""Tests of llm_obs_middleware.exporters."""
