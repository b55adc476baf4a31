"""The export pipeline: the bounded queues, one worker per sink, retries, the disk spool and redaction."""
