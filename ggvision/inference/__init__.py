"""Inference: the model runtime library (manifest, ONNX Runtime sessions, pre/post-processing per model family,
loading with verification) and the com.ggvision.Inference component built on it.

- manifest.py    model-manifest/1.0: ModelManifest, InputSpec, Thresholds, ModelError, load_manifest, sha256_file,
                 write_model_dir (no onnxruntime needed)
- session.py     execution provider choice (TensorRT -> CUDA -> CPU), tuned sessions, IO-binding runner
- preprocess.py  letterbox/stretch resize and tensor layout/colour/normalisation (Geometry per frame)
- decoders.py    one decoder per family (yolox, yolov8, ssd, classification, tabular) -> detections/1.0 task parts
- dynamic_batch.py  fixed-batch-1 export -> dynamic batch, kept only when outputs are provably identical
- model.py       load_model (digest + shape checks + warm-up) -> LoadedModel.infer (write_model_dir re-exported)
"""
