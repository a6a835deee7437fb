"""The optional LLM step: prompts from labels, an OpenAI-compatible client with retries and bounded
concurrency, a persistent response cache, a token budget, and Batch-API JSONL export/import."""
