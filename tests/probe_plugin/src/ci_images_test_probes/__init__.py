"""Smoke probe plugins for ci-images' tests (entry point group ``ci_images.smoke``)."""
