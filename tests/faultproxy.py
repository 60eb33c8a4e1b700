"""An HTTP proxy on loopback between boto3 and moto's server that answers SQS SendMessageBatch and Kinesis
PutRecords the ways AWS may and moto never does: some entries of a request failed (the others accepted), or the
whole request throttled. Everything else passes through unchanged, so the service state is moto's.

`down()` / `up()` model a dropped link (a VPN that went away): requests are read and never answered nor
forwarded, and dropped when the link returns. `response_delay_s` delays the answer of an accepted request (the
service has it, the client does not know yet), so a client killed meanwhile re-sends what was accepted.

The failures are real in their effect: an entry reported as failed is removed from the request before it is
forwarded (the service never sees it), exactly as when AWS did not accept it. The proxy also records what
each request carried (ids, sizes, keys), so a test can check batching limits and that accepted entries were
never sent again.
"""

from __future__ import annotations

import base64
import http.client
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

SQS_BATCH = "AmazonSQS.SendMessageBatch"
KINESIS_PUT = "Kinesis_20131202.PutRecords"
_HOP = {"content-length", "transfer-encoding", "connection", "keep-alive", "host"}


@dataclass
class Sent:
    """One SendMessageBatch / PutRecords request as the Uplink sent it."""

    op: str
    ids: list[str]  # record ids (uplink-record/1.0 "id") in request order
    failed: list[str]  # ids the proxy failed (not forwarded)
    sizes: list[int]  # body / data bytes per entry
    entries: list[dict[str, Any]] = field(repr=False, default_factory=list)  # the API entries as sent
    throttled: bool = False
    refused: bool = False  # the service answered the request with an error


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        up = urlsplit(upstream)
        self.upstream = (up.hostname or "127.0.0.1", up.port or 80)
        self.lock = threading.Lock()
        self.fail_once: dict[str, set[str]] = {SQS_BATCH: set(), KINESIS_PUT: set()}  # op -> ids whose entry
        # fails the first time a request carries it
        self.throttle: dict[str, int] = {}  # op -> how many more requests to answer "throttled"
        self.response_delay_s = 0.0  # after the service accepted a request, before its answer: a slow link
        self.pending: Counter[str] = Counter()  # op -> accepted requests whose answer is being delayed
        self._up = threading.Event()
        self._up.set()
        self.log: list[Sent] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if not proxy._up.is_set():  # the link is down: no answer; dropped when it returns
                    proxy._up.wait(120)
                    self.close_connection = True
                    return
                status, headers, out = proxy._handle(self.path, dict(self.headers.items()), body)
                try:
                    self.send_response(status)
                    for k, v in headers:
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(out)))
                    self.end_headers()
                    self.wfile.write(out)
                except (BrokenPipeError, ConnectionResetError):  # the client was killed or gave up meanwhile
                    self.close_connection = True

            do_GET = do_POST  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="faultproxy", daemon=True)
        self._thread.start()

    def down(self) -> None:
        self._up.clear()

    def up(self) -> None:
        self._up.set()

    def stop(self) -> None:
        self._up.set()
        self.server.shutdown()
        self.server.server_close()

    def sent(self, op: str) -> list[Sent]:
        with self.lock:
            return [s for s in self.log if s.op == op]

    def accepted(self, op: str) -> list[str]:
        """Every id the service accepted, in the order the requests reached it (repeats included)."""
        return [i for s in self.sent(op) if not (s.throttled or s.refused) for i in s.ids if i not in s.failed]

    # -- the proxy --------------------------------------------------------------------------------------
    def _forward(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            conn.request("POST", path, body=body, headers={k: v for k, v in headers.items() if k.lower() not in _HOP})
            r = conn.getresponse()
            return r.status, [(k, v) for k, v in r.getheaders() if k.lower() not in _HOP], r.read()
        finally:
            conn.close()

    def _handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        target = next((v for k, v in headers.items() if k.lower() == "x-amz-target"), "")
        if target not in (SQS_BATCH, KINESIS_PUT):
            return self._forward(path, headers, body)
        doc = json.loads(body)
        key = "Entries" if target == SQS_BATCH else "Records"
        entries = doc[key]
        if target == SQS_BATCH:
            raw = [e["MessageBody"].encode() for e in entries]
        else:
            raw = [base64.b64decode(e["Data"]) for e in entries]
        ids = [_record_id(b) for b in raw]
        with self.lock:
            if self.throttle.get(target, 0) > 0:
                self.throttle[target] -= 1
                self.log.append(Sent(target, ids, [], [len(b) for b in raw], entries, throttled=True))
                return _throttled(target)
            failed = [i for i in ids if i in self.fail_once[target]]
            self.fail_once[target] -= set(failed)
            delay = self.response_delay_s
            sent = Sent(target, ids, failed, [len(b) for b in raw], entries)
            self.log.append(sent)
        keep = [e for e, i in zip(entries, ids, strict=True) if i not in failed]
        if keep:
            status, rh, out = self._forward(path, headers, json.dumps({**doc, key: keep}).encode())
            if status != 200:
                sent.refused = True
                return status, rh, out
            resp = json.loads(out)
        else:
            rh, resp = [("Content-Type", "application/x-amz-json-1.0")], {}
        if target == SQS_BATCH:
            resp.setdefault("Successful", [])
            resp["Failed"] = resp.get("Failed", []) + [
                {"Id": e["Id"], "SenderFault": False, "Code": "InternalError", "Message": "injected by FaultProxy"}
                for e, i in zip(entries, ids, strict=True) if i in failed]
        else:
            results = iter(resp.get("Records", []))
            resp["Records"] = [{"ErrorCode": "ProvisionedThroughputExceededException",
                                "ErrorMessage": "Rate exceeded for shard (injected by FaultProxy)"} if i in failed
                               else next(results) for i in ids]
            resp["FailedRecordCount"] = resp.get("FailedRecordCount", 0) + len(failed)
        if delay:
            with self.lock:
                self.pending[target] += 1
            time.sleep(delay)  # the answer is late, not the acceptance (a client killed meanwhile never learns it)
            with self.lock:
                self.pending[target] -= 1
        return 200, rh, json.dumps(resp).encode()


def _record_id(body: bytes) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        return ""
    return str(doc.get("id", "")) if isinstance(doc, dict) else ""


def _throttled(target: str) -> tuple[int, list[tuple[str, str]], bytes]:
    if target == SQS_BATCH:
        return 400, [("Content-Type", "application/x-amz-json-1.0"),
                     ("x-amzn-query-error", "RequestThrottled;Sender")], \
            json.dumps({"__type": "com.amazonaws.sqs#RequestThrottled", "message": "Rate exceeded"}).encode()
    return 400, [("Content-Type", "application/x-amz-json-1.1")], json.dumps(
        {"__type": "ProvisionedThroughputExceededException", "message": "Rate exceeded for stream"}).encode()
