"""The Bedrock Runtime wire format (Converse, ConverseStream, InvokeModel embeddings): adapter, wire Structs,
response observers and the OpenAI translator."""
