"""Local development and the demo: the defaults of base.py point at the local stack."""

from .base import *  # noqa: F403
