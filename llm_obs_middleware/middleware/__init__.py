"""The pure-ASGI middlewares: trace context, export, accounting, and the helper that stacks them with the router."""
