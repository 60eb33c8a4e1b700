"""`python -m cloud.endpoint [--host H] [--port N] [--model DIR]`: serve a model directory (model.onnx +
manifest.json) by the SageMaker hosting contract until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from ggvision.model.manifest import ModelError

from .server import DEFAULT_MODEL_DIR, DEFAULT_PORT, serve


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cloud.endpoint", description=__doc__)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (a container binds 0.0.0.0)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (SageMaker: {DEFAULT_PORT})")
    p.add_argument("--model", default=DEFAULT_MODEL_DIR, help="model directory: model.onnx + manifest.json")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        server = serve(args.model, args.host, args.port, threads=args.threads)
    except ModelError as e:
        print(f"cloud.endpoint: {e}", file=sys.stderr)
        return 2
    # shutdown() must come from another thread than serve_forever's
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    print(f"cloud.endpoint: serving {server.model.where} on http://{args.host}:{server.server_address[1]}",
          flush=True)
    server.serve_forever()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
