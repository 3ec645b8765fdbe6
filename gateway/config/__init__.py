"""Configuration: typed frozen settings and the loader (the only reader of the environment)."""

from gateway.config.loader import ConfigError, load_settings
from gateway.config.settings import ProviderRuntime, Settings

__all__ = ["ConfigError", "ProviderRuntime", "Settings", "load_settings"]
