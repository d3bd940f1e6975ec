"""mcrm-gateway: the service layer (config, storage, providers, HTTP edge, daemon)."""

__version__ = "0.1.0"
