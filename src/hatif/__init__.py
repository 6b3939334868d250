"""Hatif (هاتف, "telephone"): a self-hosted contact-center platform."""

__version__ = "0.1.0"
