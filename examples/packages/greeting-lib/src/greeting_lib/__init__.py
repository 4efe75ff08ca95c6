"""Greetings, for the s2i Python examples (served from a local package index)."""

__version__ = "1.0.0"


def greet(name: str) -> str:
    """A greeting for `name`."""
    name = name.strip() or "world"
    return f"Hello, {name}! (greeting-lib {__version__})"
