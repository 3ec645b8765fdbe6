"""Health-aware LLM gateway: one HTTP endpoint in front of many model providers."""

__version__ = "0.1.0"
