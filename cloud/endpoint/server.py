"""The endpoint's HTTP server, by the SageMaker hosting contract: GET /ping answers 200 once the model is loaded,
POST /invocations takes one image (JPEG/PNG/WebP bytes, any Content-Type) and answers JSON:

    {"model": {"name": "synthetic-detector", "version": "1.0.0"},
     "detections": [{"label": "person", "class_id": 0, "score": 0.93, "box": [x1, y1, x2, y2]}, ...]}

(`detections` as in detections/1.0, boxes in the image's pixels). The server also answers
POST /endpoints/{name}/invocations, the path of the runtime API's InvokeEndpoint (botocore's sagemaker-runtime
model: requestUri "/endpoints/{EndpointName}/invocations"), the way the runtime answers it: a container error
becomes HTTP 424 `ModelError` with OriginalStatusCode and OriginalMessage. So boto3's real client, given
`endpoint_url` (or AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME), talks to this process as it would to SageMaker.

Why the standard library's ThreadingHTTPServer: the endpoint's whole surface is two routes; a container with no
web framework has nothing else to patch, and one model session behind a lock serialises inference anyway
(SageMaker scales with instances, not threads). Flask is in the dev environment only as moto's dependency.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ggvision.model.loader import LoadedModel, load_model
from ggvision.model.manifest import ModelError

log = logging.getLogger("cloud.endpoint")

DEFAULT_PORT = 8080  # the hosting contract: the container listens on 8080
DEFAULT_MODEL_DIR = "/opt/ml/model"  # where SageMaker unpacks the model artifacts
MAX_BODY_BYTES = 6 * 1024 * 1024  # InvokeEndpoint's payload limit (6 MB)
RUNTIME_PATH = re.compile(r"^/endpoints/([A-Za-z0-9](?:-*[A-Za-z0-9]){0,62})/invocations$")


class EndpointServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], model: LoadedModel) -> None:
        super().__init__(address, _Handler)
        self.model = model
        self.lock = threading.Lock()  # LoadedModel.infer: one thread at a time

    def predict(self, body: bytes) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON document) for one request body."""
        if not body:
            return 400, {"message": "empty body: expected an image (JPEG, PNG or WebP bytes)"}
        img = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            return 415, {"message": f"cannot decode the {len(body)}-byte body as an image (JPEG, PNG or WebP)"}
        try:
            with self.lock:
                [out], _ = self.model.infer([img])
        except ModelError as e:
            log.error("inference failed: %s", e)
            return 500, {"message": str(e)}
        m = self.model.manifest
        return 200, {"model": {"name": m.name, "version": m.version}, "detections": out.get("detections", [])}


class _Handler(BaseHTTPRequestHandler):
    server: EndpointServer
    protocol_version = "HTTP/1.1"  # keep-alive: boto3 reuses its connections

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("%s " + fmt, self.address_string(), *args)

    def _send(self, status: int, doc: dict[str, Any] | None, headers: dict[str, str] | None = None) -> None:
        body = b"" if doc is None else json.dumps(doc, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path == "/ping":
            self._send(200, None)
        else:
            self._send(404, {"message": f"no route GET {self.path}: the contract has GET /ping"})

    def do_POST(self) -> None:  # noqa: N802
        runtime = RUNTIME_PATH.match(self.path)
        if self.path != "/invocations" and not runtime:
            self._send(404, {"message": f"no route POST {self.path}: the contract has POST /invocations"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.close_connection = True  # the body is not read
            status, doc = 413, {"message": f"body of {length} bytes is over the {MAX_BODY_BYTES}-byte limit"}
        else:
            status, doc = self.server.predict(self.rfile.read(length))
        if not runtime:
            self._send(status, doc)
        elif status == 200:
            m = doc["model"]
            self._send(200, doc, {"x-Amzn-Invoked-Production-Variant": f"{m['name']}-{m['version']}"})
        else:  # the runtime API's answer to a container error
            self._send(424, {"Message": f"Received client error ({status}) from primary with message "
                                        f"\"{doc['message']}\"", "OriginalStatusCode": status,
                             "OriginalMessage": doc["message"]}, {"x-amzn-ErrorType": "ModelError"})


def serve(model_dir: str | Path, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *, provider: str = "auto",
          threads: int | None = None) -> EndpointServer:
    """Load and warm up the model (ModelError if it cannot be served), then bind; serve_forever() runs it.
    provider: as ggvision.model.session.choose_providers ("auto" takes a GPU when the container has one)."""
    model = load_model(model_dir, provider=provider, threads=threads)
    return EndpointServer((host, port), model)
