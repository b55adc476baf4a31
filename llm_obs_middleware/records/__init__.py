"""The record: the normalized schema, building a record from a finished exchange, token estimates, length bounds."""
