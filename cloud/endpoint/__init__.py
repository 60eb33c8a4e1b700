"""The second-stage inference endpoint: a server that follows the SageMaker hosting contract (GET /ping,
POST /invocations on port 8080, the model under /opt/ml/model) with ONNX Runtime inside, runnable on loopback as
`python -m cloud.endpoint --port N --model DIR`.

- server.py    the HTTP server: the contract's two routes, plus InvokeEndpoint's own path so that boto3's
               sagemaker-runtime client can talk to a local process directly
- __main__.py  the command line
"""
