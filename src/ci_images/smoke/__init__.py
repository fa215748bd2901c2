"""Smoke probes: run an image and use it with the client its consumers use."""
