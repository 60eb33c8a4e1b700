"""Deployment documents and their renderer (see deploy/README.md)."""
