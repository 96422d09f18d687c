"""The package's version: the one source that ``pyproject.toml``, ``--version`` and the files
the package writes read it from."""

__version__ = "0.1.0"
