"""The Cohere wire format: adapter, wire Structs, response observers and the OpenAI translator."""
