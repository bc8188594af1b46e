"""The reliability and security campaign: `make chaos` (see RELIABILITY.md)."""
