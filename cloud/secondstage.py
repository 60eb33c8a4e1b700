"""The second-stage model, called through the SageMaker runtime API (InvokeEndpoint) with boto3's own client:
the endpoint may be SageMaker or, on loopback, `python -m cloud.endpoint` (point boto3 at it with
AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME, boto3's per-service endpoint variable).

An answer the model gives about the image itself (ModelError with a 4xx OriginalStatusCode: not an image, too
large) is Malformed: no retry helps. Anything else (connection refused, 5xx, throttling) is an Unavailable
error the message is retried for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .s3events import Malformed


class Unavailable(RuntimeError):
    """The endpoint could not answer now; the message is retried."""


@dataclass(frozen=True)
class Answer:
    label_scores: dict[str, float]  # the best score per label the model reported on the image
    model: dict[str, str]


def classify(client: Any, endpoint: str, image: bytes, content_type: str, where: str) -> Answer:
    try:
        r = client.invoke_endpoint(EndpointName=endpoint, Body=image, ContentType=content_type,
                                   Accept="application/json")
        doc = json.loads(r["Body"].read())
    except ClientError as e:
        err = e.response.get("Error", {})
        original = e.response.get("OriginalStatusCode") or 0
        if err.get("Code") == "ModelError" and 400 <= int(original) < 500:
            raise Malformed(f"{where}: the model refused the image: {e.response.get('OriginalMessage') or err}") \
                from None
        raise Unavailable(f"InvokeEndpoint {endpoint}: {err.get('Code')}: {err.get('Message')}") from e
    except (BotoCoreError, OSError, ValueError) as e:
        raise Unavailable(f"InvokeEndpoint {endpoint}: {type(e).__name__}: {e}") from e
    scores: dict[str, float] = {}
    for d in doc.get("detections", []):
        label, score = str(d.get("label")), float(d.get("score", 0.0))
        scores[label] = max(score, scores.get(label, 0.0))
    model = doc.get("model") if isinstance(doc.get("model"), dict) else {}
    return Answer(scores, {k: str(v) for k, v in model.items()})
