"""Health checks on the record: what is wrong, where, since when, and what to try (README, "Health checks")."""

from .config import CHECKS, HealthConfig

__all__ = ["CHECKS", "HealthConfig"]
