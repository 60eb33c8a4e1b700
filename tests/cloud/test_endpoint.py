"""The second-stage endpoint (cloud/endpoint) as a process on loopback, by the SageMaker hosting contract
(GET /ping, POST /invocations) and through boto3's real sagemaker-runtime client: botocore's service model
says InvokeEndpoint is POST /endpoints/{EndpointName}/invocations with the body as the payload, Content-Type
and Accept headers, and the answer's production variant in x-Amzn-Invoked-Production-Variant."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import botocore.session
import pytest
from cloud_dev import ENDPOINT_NAME, EndpointProcess, empty_jpeg, person_jpeg


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EndpointProcess]:
    ep = EndpointProcess(Path(tmp_path_factory.mktemp("endpoint")) / "endpoint.log")
    yield ep
    ep.stop()


def _runtime(url: str):  # noqa: ANN202
    return boto3.client("sagemaker-runtime", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def test_the_wire_shape_is_botocores() -> None:
    op = botocore.session.get_session().get_service_model("sagemaker-runtime").operation_model("InvokeEndpoint")
    assert op.http == {"method": "POST", "requestUri": "/endpoints/{EndpointName}/invocations"}
    assert op.output_shape.members["InvokedProductionVariant"].serialization["name"] == \
        "x-Amzn-Invoked-Production-Variant"


def test_ping_and_invocations_by_the_hosting_contract(endpoint: EndpointProcess) -> None:
    assert urllib.request.urlopen(f"{endpoint.url}/ping", timeout=5).status == 200
    req = urllib.request.Request(f"{endpoint.url}/invocations", data=person_jpeg(), method="POST",
                                 headers={"Content-Type": "image/jpeg"})
    doc = json.loads(urllib.request.urlopen(req, timeout=10).read())
    assert doc["model"] == {"name": "synthetic-detector", "version": "1.0.0"}
    assert any(d["label"] == "person" and d["score"] > 0.3 for d in doc["detections"]), doc
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(urllib.request.Request(f"{endpoint.url}/invocations", data=b"not an image",
                                                      method="POST"), timeout=10)
    assert e.value.code == 415 and "cannot decode" in json.loads(e.value.read())["message"]


def test_boto3_invoke_endpoint_talks_to_the_process(endpoint: EndpointProcess) -> None:
    rt = _runtime(endpoint.url)
    r = rt.invoke_endpoint(EndpointName=ENDPOINT_NAME, Body=person_jpeg(), ContentType="image/jpeg",
                           Accept="application/json")
    assert r["InvokedProductionVariant"] == "synthetic-detector-1.0.0"
    assert any(d["label"] == "person" for d in json.loads(r["Body"].read())["detections"])
    empty = json.loads(rt.invoke_endpoint(EndpointName=ENDPOINT_NAME, Body=empty_jpeg(),
                                          ContentType="image/jpeg")["Body"].read())
    assert [d for d in empty["detections"] if d["label"] == "person"] == [], empty
    # a container error comes back as the runtime API's ModelError, with the container's status and message
    with pytest.raises(rt.exceptions.ModelError) as e:
        rt.invoke_endpoint(EndpointName=ENDPOINT_NAME, Body=b"\xff\xd8 broken", ContentType="image/jpeg")
    assert e.value.response["OriginalStatusCode"] == 415
    assert "cannot decode" in e.value.response["OriginalMessage"]
