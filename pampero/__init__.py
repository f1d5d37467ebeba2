"""pampero: an OpenAI-compatible server for local models and a gateway across providers."""

__version__ = "0.1.0"
