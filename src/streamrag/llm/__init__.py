"""Chat models behind one protocol: OpenAI-compatible APIs and the bundled local model."""
