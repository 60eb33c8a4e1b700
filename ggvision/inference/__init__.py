"""com.ggvision.Inference: batched ONNX Runtime across cameras on the model runtime library (ggvision.model),
model components resolved over IPC, hot swap, shadow (A/B) agreement and the fire-risk tabular pipeline."""
