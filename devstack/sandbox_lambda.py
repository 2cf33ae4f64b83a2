"""A Lambda function for the local sandbox: versions 1..3 published, alias ``live`` on 3.

Works against the moto server behind AWS_ENDPOINT_URL (zip code, no docker needed).
"""

from __future__ import annotations

import io
import json
import zipfile
from contextlib import suppress
from typing import Any

ROLE_NAME = "lambda-role"
ALIAS = "live"


def code_zip(version: int) -> bytes:
    """A tiny in-memory deployment package whose handler returns its version."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("index.py", f"def handler(event, context):\n    return {version}\n")
    return buf.getvalue()


def seed_lambda(function: str = "demo-fn", versions: int = 3, alias: str = ALIAS) -> dict[str, Any]:
    """Create ``function``, publish versions 1..``versions`` and point ``alias`` at the
    last one. Returns {"function", "alias", "versions", "alias_arn"}."""
    from rollback import aws

    iam = aws.client("iam")
    lam = aws.client("lambda")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    with suppress(iam.exceptions.EntityAlreadyExistsException):
        iam.create_role(RoleName=ROLE_NAME, AssumeRolePolicyDocument=json.dumps(trust))
    role_arn = iam.get_role(RoleName=ROLE_NAME)["Role"]["Arn"]
    lam.create_function(
        FunctionName=function,
        Runtime="python3.11",
        Role=role_arn,
        Handler="index.handler",
        Code={"ZipFile": code_zip(1)},
    )
    published = []
    for n in range(1, versions + 1):
        if n > 1:
            lam.update_function_code(FunctionName=function, ZipFile=code_zip(n))
        out = lam.publish_version(FunctionName=function, Description=f"v{n}")
        published.append(out["Version"])
    made = lam.create_alias(FunctionName=function, Name=alias, FunctionVersion=published[-1])
    return {
        "function": function,
        "alias": alias,
        "versions": published,
        "alias_arn": made["AliasArn"],
    }
