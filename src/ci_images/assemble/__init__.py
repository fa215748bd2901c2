"""Daemonless assembly: a Dockerfile of metadata and context copies, turned into registry documents.

The pure core, engine- and registry-free: ``dockerfile`` parses and classifies, ``shell`` expands variables as
BuildKit does, ``config`` carries the instructions out on the base's config, ``layers`` writes one reproducible layer
per COPY/ADD, ``image`` makes the config, manifest and index bytes. Nothing here imports the rest of the package's
adapters; ``dockerfile`` and ``sources`` do not import docker either, so the plan may classify with them.
"""
