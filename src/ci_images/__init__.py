"""ci-images: keep a project's CI service images built, smoke-tested, tagged and pushed to an OCI registry."""

__version__ = "0.1.0"
