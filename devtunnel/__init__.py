"""devtunnel: a public HTTPS JWKS URL for local AIR Kit work, in one command."""

__version__ = "0.1.0"
