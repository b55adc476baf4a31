"""Provider adapters, one package per wire format, behind the protocol in ``base``; ``registry`` picks one."""
