"""Model registry: register ONNX models, store them, build com.ggvision.Model.<name> components.

Not implemented yet (see the model registry and rollout issue); the package exists so the
layout of docs/architecture.md holds from the start.
"""
