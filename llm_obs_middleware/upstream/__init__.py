"""The one upstream HTTP client: building it, sending through it, and the errors it raises."""
