"""Render a deployment document under deploy/deployments/ into boto3 ``greengrassv2.create_deployment`` kwargs.

The documents carry two placeholders so one file serves every account and region:

- ``${AWS_REGION}``: the AWS Region of the thing group, e.g. ``eu-west-1``;
- ``${AWS_ACCOUNT_ID}``: the 12-digit AWS account that owns it.

Any other ``${...}`` left in a document is an error: a deployment must not reach the service half-filled.

Library use::

    from deploy.render import render
    greengrassv2.create_deployment(**render("deploy/deployments/dev.json", "eu-west-1", "123456789012"))

Command line (prints JSON for ``aws greengrassv2 create-deployment --cli-input-json file://...``)::

    python deploy/render.py deploy/deployments/dev.json --region eu-west-1 --account 123456789012
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
ACCOUNT = re.compile(r"^\d{12}$")


class RenderError(ValueError):
    """A document, region or account that cannot make a valid deployment request."""


def _substitute(value: Any, values: dict[str, str], where: str) -> Any:
    if isinstance(value, str):

        def repl(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in values:
                raise RenderError(f"{where}: unknown placeholder ${{{name}}} (known: {', '.join(sorted(values))})")
            return values[name]

        return PLACEHOLDER.sub(repl, value)
    if isinstance(value, dict):
        return {k: _substitute(v, values, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, values, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def render_document(doc: dict[str, Any], region: str, account: str) -> dict[str, Any]:
    """Substitute the placeholders in an already-loaded document; the input is not modified."""
    if not REGION.match(region):
        raise RenderError(f"not an AWS Region name: {region!r}")
    if not ACCOUNT.match(account):
        raise RenderError(f"not a 12-digit AWS account id: {account!r}")
    if not isinstance(doc, dict):
        raise RenderError("a deployment document is a JSON object")
    return _substitute(doc, {"AWS_REGION": region, "AWS_ACCOUNT_ID": account}, "$")


def render(path: str | Path, region: str, account: str) -> dict[str, Any]:
    """Load the deployment document at ``path`` and return it with ``${AWS_REGION}``/``${AWS_ACCOUNT_ID}`` filled."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise RenderError(f"{path}: not JSON: {e}") from e
    return render_document(doc, region, account)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render a ggvision deployment document for create-deployment.")
    parser.add_argument("document", type=Path, help="e.g. deploy/deployments/dev.json")
    parser.add_argument("--region", required=True, help="AWS Region, e.g. eu-west-1")
    parser.add_argument("--account", required=True, help="12-digit AWS account id")
    args = parser.parse_args(argv)
    try:
        rendered = render(args.document, args.region, args.account)
    except (OSError, RenderError) as e:
        print(f"render: {e}", file=sys.stderr)
        return 2
    json.dump(rendered, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
