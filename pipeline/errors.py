"""The error of a configuration value that cannot work. A module of its own, importing nothing of the
project, so that every part (the config checks, the data loaders' resolvers, the runners) can raise it
without importing another (pipeline.config re-exports it; tests/test_codebase.py forbids import cycles)."""


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the key and the allowed values."""
