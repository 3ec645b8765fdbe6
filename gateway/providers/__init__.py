"""Provider adapters: one module per wire format behind the ``ChatProvider`` protocol."""
