"""Test component payload: proves it runs inside com.ggvision.Runtime's virtualenv (not product)."""

import json
import os
import sys

import av
import cv2
import numpy
import onnxruntime
from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

import ggvision

client = GreengrassCoreIPCClientV2()
cfg = client.get_configuration().value
out = {
    "prefix": sys.prefix,
    "executable": sys.executable,
    "ggvision": ggvision.__file__,
    "versions": {"numpy": numpy.__version__, "onnxruntime": onnxruntime.__version__, "cv2": cv2.__version__,
                 "av": av.__version__},
    "providers": onnxruntime.get_available_providers(),
    "config": cfg,
}
path = os.path.join(sys.argv[1], "probe.json")
with open(path + ".tmp", "w") as f:
    json.dump(out, f)
os.replace(path + ".tmp", path)
print("probe done", flush=True)
