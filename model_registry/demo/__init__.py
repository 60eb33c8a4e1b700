"""The demo models ggvision makes itself: data generation, training and evaluation scripts.

Training needs the `train` extra (torch, scikit-learn, skl2onnx); the data helpers and the
evaluation code need only numpy and OpenCV, so tests can use them without the training stack.
"""
