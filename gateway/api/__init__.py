"""HTTP surface: AgentOS API, OpenAI-compatible API, operations endpoints."""
