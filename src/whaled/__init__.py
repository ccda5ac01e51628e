"""whaled: a daemon that watches Opinion.Trade prediction markets and the wallets that trade big on them."""

from whaled.errors import ConfigError, WhaledError

__version__ = "0.1.0"

__all__ = ["ConfigError", "WhaledError", "__version__"]
