"""Smoke probes: run an image and use it with the client its consumers use.

``KINDS`` is the one list of probe kinds; the catalog is validated against it. Each kind is one module here
(``kms.py``, ``vault.py``) with the same four names: ``CONTAINER_PORT``, ``port_env``, ``environment`` and ``probe``.
Importing this package stays light (no boto3, no hvac), so loading a catalog never pulls in the clients.
"""

from __future__ import annotations

KINDS: tuple[str, ...] = ("kms", "vault")
