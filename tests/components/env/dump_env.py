"""Test component payload: dump argv and Greengrass environment variables as JSON (not product)."""

import json
import os
import sys

KEYS = ["AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT", "SVCUID", "AWS_IOT_THING_NAME", "AWS_REGION",
        "AWS_DEFAULT_REGION", "GGC_VERSION", "GG_ROOT_CA_PATH", "AWS_CONTAINER_AUTHORIZATION_TOKEN", "GREETING"]
out = {"argv": sys.argv[2:], "env": {k: os.environ.get(k) for k in KEYS}, "cwd": os.getcwd()}
with open(sys.argv[1] + ".tmp", "w") as f:
    json.dump(out, f)
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
print("env dumped", flush=True)
