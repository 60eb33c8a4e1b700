"""The model runtime library: what a model folder is and how it runs, shared by the Inference component, the
model registry and the benchmarks.

- manifest.py       model-manifest/1.0: ModelManifest, InputSpec, Thresholds, ModelError, load_manifest,
                    sha256_file, write_model_dir (no onnxruntime needed)
- session.py        execution provider choice (TensorRT -> CUDA -> CPU), tuned sessions, IO-binding runner
- preprocess.py     letterbox/stretch resize and tensor layout/colour/normalisation (Geometry per frame)
- decoders.py       one decoder per family (yolox, yolov8, ssd, classification, tabular) -> detections/1.0 parts
- dynamic_batch.py  fixed-batch-1 export -> dynamic batch, kept only when outputs are provably identical
- loader.py         load_model (digest + shape checks + warm-up) -> LoadedModel.infer
- fire_features.py  the fire-risk model's 15 thermal + 3 gas features from a Lepton frame and an SCD41 reading
A new model family is a decoder in decoders.py and its name in manifest.py's families.
"""
