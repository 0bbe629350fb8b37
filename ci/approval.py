#!/usr/bin/env python3
"""Before a deploy: was this execution approved by one of the named approvers?

CodePipeline has no resource policies, so anyone in the account whose own policies allow
``codepipeline:PutApprovalResult`` can approve (an administrator, a role with
``AWSCodePipelineApproverAccess``). The Deploy stage therefore reads who approved from the
execution's own record and refuses to deploy unless it is one of the stack's ``approvers``
(``Pulumi.<stack>.yaml``): a role (any session of it) or a group (an IAM user in it).

A rollback execution re-deploys an earlier execution's revision: the approval checked is
that execution's.

Run by ``make check-approval`` in the Deploy stage (ci/buildspecs/deploy.yml) with
PIPELINE_NAME, PIPELINE_EXECUTION_ID (CodePipeline's variable) and APPROVERS (JSON list of
ARNs, set by infra/pipeline.py). Standard library and the AWS CLI only, like ci/smoke.py.
Exit status 0: approved by an approver; 1: not (the message says by whom and who may);
2: bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from typing import Callable

APPROVAL = ("Approval", "Approve")          # stage and action names (infra/pipeline.py)
ROLLBACKS = ("ManualRollback", "AutomatedRollback")
ASSUMED_ROLE = re.compile(r"^arn:(?P<partition>[^:]+):sts::(?P<account>\d{12}):"
                          r"assumed-role/(?P<role>[^/]+)/(?P<session>.+)$")
IAM_ENTITY = re.compile(r"^arn:(?P<partition>[^:]+):iam::(?P<account>\d{12}):"
                        r"(?P<kind>role|group|user)/(?:.*/)?(?P<name>[^/]+)$")

Run = Callable[..., subprocess.CompletedProcess]


class NotApproved(Exception):
    """The execution has no approval, or one by someone who is not an approver."""


def _aws(run: Run, *args: str) -> dict:
    result = run(["aws", *args, "--output", "json"], capture_output=True, text=True,
                 check=False)
    if result.returncode != 0:
        raise NotApproved(f"aws {' '.join(args[:2])} failed: {result.stderr.strip()}")
    return json.loads(result.stdout or "{}")


def approved_execution(pipeline: str, execution: str, run: Run) -> str:
    """The execution whose approval counts: this one, or the one a rollback re-runs."""
    record = _aws(run, "codepipeline", "get-pipeline-execution", "--pipeline-name", pipeline,
                  "--pipeline-execution-id", execution)["pipelineExecution"]
    if (record.get("trigger") or {}).get("triggerType") in ROLLBACKS:
        target = (record.get("rollbackMetadata") or {}).get("rollbackTargetPipelineExecutionId")
        if not target:
            raise NotApproved(f"rollback execution {execution} names no target execution")
        return target
    return execution


def approver_of(pipeline: str, execution: str, run: Run) -> tuple[str, str]:
    """(ARN of whoever approved the execution, their summary); raises when none did."""
    details = _aws(run, "codepipeline", "list-action-executions", "--pipeline-name", pipeline,
                   "--filter", f"pipelineExecutionId={execution}")["actionExecutionDetails"]
    approvals = [d for d in details if (d.get("stageName"), d.get("actionName")) == APPROVAL]
    succeeded = [d for d in approvals if d.get("status") == "Succeeded"]
    if not succeeded:
        states = ", ".join(d.get("status", "?") for d in approvals) or "no approval action"
        raise NotApproved(f"execution {execution} of {pipeline} was not approved ({states})")
    latest = max(succeeded, key=lambda d: str(d.get("lastUpdateTime", "")))
    if not latest.get("updatedBy"):
        raise NotApproved(f"the approval of execution {execution} records no approver")
    summary = ((latest.get("output") or {}).get("executionResult") or {}) \
        .get("externalExecutionSummary", "")
    return latest["updatedBy"], summary


def is_approver(arn: str, approvers: list[str], run: Run) -> bool:
    """A session of a listed role, or an IAM user in a listed group (same account)."""
    session = ASSUMED_ROLE.match(arn)
    user = IAM_ENTITY.match(arn)
    for approver in approvers:
        listed = IAM_ENTITY.match(approver)
        if not listed:
            continue
        if session and listed["kind"] == "role" and (session["role"], session["account"]) \
                == (listed["name"], listed["account"]):
            return True
        if user and user["kind"] == "user" and listed["kind"] == "group" \
                and user["account"] == listed["account"]:
            members = _aws(run, "iam", "get-group", "--group-name", listed["name"])["Users"]
            if any(m.get("Arn") == arn for m in members):
                return True
    return False


def check(pipeline: str, execution: str, approvers: list[str], run: Run = subprocess.run,
          log: Callable[[str], None] = print) -> str:
    """Raise NotApproved unless an approver approved; return who did."""
    if not approvers:
        raise NotApproved("no approvers are configured (approvers in Pulumi.<stack>.yaml)")
    counted = approved_execution(pipeline, execution, run)
    who, summary = approver_of(pipeline, counted, run)
    if not is_approver(who, approvers, run):
        raise NotApproved(f"execution {counted} of {pipeline} was approved by {who}, who is not "
                          f"one of the approvers {approvers}: nothing is deployed. One of them "
                          "must approve a new execution (an administrator may change "
                          "approvers in Pulumi.<stack>.yaml)")
    note = f" ({summary})" if summary else ""
    log(f"approval: OK: {pipeline} execution {counted} approved by {who}{note}")
    return who


def main(argv: list[str] | None = None, run: Run = subprocess.run) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipeline", default=os.environ.get("PIPELINE_NAME"))
    parser.add_argument("--execution", default=os.environ.get("PIPELINE_EXECUTION_ID"))
    parser.add_argument("--approvers", default=os.environ.get("APPROVERS"),
                        help="JSON list of role or group ARNs")
    args = parser.parse_args(argv)
    if not (args.pipeline and args.execution and args.approvers):
        parser.error("--pipeline, --execution and --approvers (or PIPELINE_NAME, "
                     "PIPELINE_EXECUTION_ID, APPROVERS) are required")
    try:
        approvers = json.loads(args.approvers)
    except ValueError:
        approvers = None
    if not (isinstance(approvers, list) and all(isinstance(a, str) for a in approvers)):
        parser.error(f"--approvers must be a JSON list of ARNs, not {args.approvers!r}")
    try:
        check(args.pipeline, args.execution, approvers, run=run)
    except NotApproved as err:
        print(f"approval: REFUSED: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
