"""Provider-neutral types and the agent service."""
