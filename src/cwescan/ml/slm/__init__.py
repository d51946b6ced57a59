"""The small language model behind the SLM detector: base model, prompt format, inference."""
