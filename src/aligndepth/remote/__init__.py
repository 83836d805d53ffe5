"""Talking to OpenAI-compatible endpoints: retries with backoff, an answer cache, the
shared client (keys, error text, a bounded pool). Used by the API judges and the served
engines."""
