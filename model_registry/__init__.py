"""Model registry: register ONNX models (digest, IO spec, checked to load and run, lineage), store them in a
folder or a versioned S3 bucket, list/show/diff them, build and publish com.ggvision.Model.<Name> components.

Library: ``Registry`` (registry.py), ``open_store`` (storage.py), ``build``/``publish`` (publish.py).
CLI: ``python -m model_registry`` (cli.py). Docs: docs/model-registry.md.
"""
