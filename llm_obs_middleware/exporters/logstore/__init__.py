"""exporters/logstore."""
