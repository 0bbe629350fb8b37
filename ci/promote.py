#!/usr/bin/env python3
"""After a verified deploy: publish the revision to the next stack's pipeline.

Run by ``make promote`` as the last command of the Deploy stage (ci/buildspecs/deploy.yml),
so only after ``pulumi up`` and the smoke test passed. It copies the exact source artifact
this execution deployed (CodeBuild names it in CODEBUILD_SOURCE_VERSION, an S3 object of
the pipeline's artifact bucket) to PROMOTE_TO (``s3://<next stack's promotion bucket>/
source.zip``, set by infra/pipeline.py), with the commit as metadata. The next stack's
pipeline starts on it; that bucket's policy lets only this stack's deploy role write.

Standard library and the AWS CLI only. Exit status 0: published, or nothing to publish to;
1: the copy failed; 2: bad arguments.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from typing import Callable

S3_OBJECT_ARN = re.compile(r"^arn:[^:]+:s3:::(?P<bucket>[^/]+)/(?P<key>.+)$")
S3_URL = re.compile(r"^s3://(?P<bucket>[^/]+)/(?P<key>.+)$")


def copy_command(source_version: str, target: str, revision: str) -> list[str]:
    """The `aws s3 cp` of the deployed source artifact to the next stack's bucket."""
    source = S3_OBJECT_ARN.match(source_version)
    if not source:
        raise ValueError(f"CODEBUILD_SOURCE_VERSION {source_version!r} is not the S3 object of "
                         "a pipeline artifact: run this from the pipeline's Deploy stage")
    if not S3_URL.match(target):
        raise ValueError(f"PROMOTE_TO {target!r} must be s3://<bucket>/<key>")
    # The metadata records which commit the revision is (CodePipeline shows the object's
    # version as the downstream execution's source revision).
    return ["aws", "s3", "cp", f"s3://{source['bucket']}/{source['key']}", target,
            "--metadata", f"revision={revision or 'unknown'}", "--only-show-errors"]


def main(argv: list[str] | None = None, run: Callable[..., subprocess.CompletedProcess]
         = subprocess.run, environ: dict[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--to", default=env.get("PROMOTE_TO", ""))
    parser.add_argument("--source", default=env.get("CODEBUILD_SOURCE_VERSION", ""))
    parser.add_argument("--revision", default=env.get("CODEBUILD_RESOLVED_SOURCE_VERSION", ""))
    args = parser.parse_args(argv)
    if not args.to:
        print("promote: this stack promotes to no other stack (promotesTo is empty)")
        return 0
    try:
        command = copy_command(args.source, args.to, args.revision)
    except ValueError as err:
        parser.error(str(err))
    result = run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        print(f"promote: FAILED to publish to {args.to}: {result.stderr.strip()}",
              file=sys.stderr)
        return 1
    print(f"promote: OK: revision {args.revision or 'unknown'} published to {args.to}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
