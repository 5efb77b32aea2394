"""f5-llm-ratio: drive BIG-IP pool member ratios from LLM engine load."""

__version__ = "0.1.0"
