"""Vigil: an OpenTelemetry-collector-style agent for hosts that serve ML models."""

__version__ = "0.1.0"
