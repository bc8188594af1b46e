"""A faithful, fast simulator of the Tasklane API (contract: docs/tasklane-api.md)."""

from .admin_client import SimAdminClient
from .config import ConfigError, SimConfig, load_config, parse_config
from .server import SimServer
from .webhooks import verify_signature

__all__ = ["ConfigError", "SimAdminClient", "SimConfig", "SimServer", "load_config", "parse_config", "verify_signature"]
