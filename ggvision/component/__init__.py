"""Shared plumbing of the ggvision Greengrass components (IPC, configuration, shutdown)."""

from .app import ComponentApp, configure_logging, error_text, run_component

__all__ = ["ComponentApp", "configure_logging", "error_text", "run_component"]
