"""The OpenAI wire format (every OpenAI-compatible server and Azure OpenAI): adapter, wire Structs, observers."""
