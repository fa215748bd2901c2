"""Registries on loopback: the ``docker-registry`` process, its certificates, and the embedded ``local`` registry."""
