"""Watching the training instance: its result file in the lake and the instance's own state.

The instance writes ``<lake>/_markers/train/<run>/try-<n>.json`` when its job ends (``deeploc.step``,
or its user data when set-up or the time limit stopped it). A instance that is gone without a result
was lost (a reclaimed spot instance, a failed host): that is worth another try, which launches a new
instance that resumes from the run's last checkpoint in the lake. ``outcome`` decides; the operator's
polling loop and ``TrainingTrigger`` (deferred, in the triggerer) both use it.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, AsyncIterator

from airflow.triggers.base import BaseTrigger, TriggerEvent

GONE = ("shutting-down", "terminated", "stopping", "stopped")
# Errors a poll may meet that say nothing about the training: the next poll asks again.
TRANSIENT = ("RequestLimitExceeded", "Throttling", "ThrottlingException", "InternalError", "ServiceUnavailable",
             "SlowDown", "RequestTimeout")


# EC2 may not know an instance it has just launched for a few seconds: that is "pending", not gone.
NOT_LISTED, NOT_LISTED_YET = "InvalidInstanceID.NotFound", ("pending", "launched; EC2 does not list it yet")


def instance_of(reservations: list) -> tuple[str | None, str]:
    """(state, reason) of the one instance a ``describe_instances`` answered with."""
    inst = reservations[0]["Instances"][0] if reservations else {}
    return inst.get("State", {}).get("Name"), inst.get("StateReason", {}).get("Message", "")


def outcome(result: dict | None, state: str | None, why: str = "") -> tuple[str, str]:
    """("running" | "success" | "retry" | "fail", message). Read the state before the result: a job that
    wrote its result and then powered off is then still seen as finished."""
    if result is not None:
        if result.get("ok"):
            return "success", "training finished"
        return ("fail" if result.get("terminal") else "retry"), str(result.get("error"))
    if state is None or state in GONE:
        return "retry", f"the training instance is {state or 'gone'} ({why or 'no reason given'}) and left no result"
    return "running", f"instance {state}"


def _split(uri: str) -> tuple[str, str]:
    from deeploc.storage.uris import split_s3

    return split_s3(uri)


class TrainingTrigger(BaseTrigger):
    """Poll the result file and the instance until one decides, or until ``deadline`` (epoch seconds)."""

    def __init__(self, instance_id: str, result_uri: str, deadline: float, poll_seconds: float,
                 aws_conn_id: str | None = "aws_default", region_name: str | None = None):
        super().__init__()
        self.instance_id, self.result_uri, self.deadline = instance_id, result_uri, deadline
        self.poll_seconds, self.aws_conn_id, self.region_name = poll_seconds, aws_conn_id, region_name

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("deeploc_airflow.training.TrainingTrigger",
                {"instance_id": self.instance_id, "result_uri": self.result_uri, "deadline": self.deadline,
                 "poll_seconds": self.poll_seconds, "aws_conn_id": self.aws_conn_id, "region_name": self.region_name})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow.providers.amazon.aws.hooks.ec2 import EC2Hook
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, key = _split(self.result_uri)
        ec2_hook = EC2Hook(aws_conn_id=self.aws_conn_id, region_name=self.region_name, api_type="client_type")
        s3_hook = S3Hook(aws_conn_id=self.aws_conn_id, region_name=self.region_name)
        async with await ec2_hook.get_async_conn() as ec2, await s3_hook.get_async_conn() as s3:
            while True:
                try:
                    state, why, result = *(await self._instance(ec2)), await self._result(s3, bucket, key)
                except (ClientError, BotoCoreError) as exc:
                    code = exc.response.get("Error", {}).get("Code") if isinstance(exc, ClientError) else "network"
                    if isinstance(exc, ClientError) and code not in TRANSIENT:
                        raise
                    self.log.warning("polling training: %s (%s); asking again", code, exc)
                    await asyncio.sleep(self.poll_seconds)
                    continue
                verdict, message = outcome(result, state, why)
                if verdict != "running":
                    yield TriggerEvent({"status": verdict, "message": message, "instance_id": self.instance_id})
                    return
                if time.time() >= self.deadline:
                    yield TriggerEvent({"status": "timeout", "message": "train_timeout_hours reached",
                                        "instance_id": self.instance_id})
                    return
                await asyncio.sleep(self.poll_seconds)

    async def _instance(self, ec2) -> tuple[str | None, str]:
        from botocore.exceptions import ClientError

        try:
            return instance_of((await ec2.describe_instances(InstanceIds=[self.instance_id]))["Reservations"])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == NOT_LISTED:
                return NOT_LISTED_YET
            raise

    @staticmethod
    async def _result(s3, bucket: str, key: str) -> dict | None:
        from botocore.exceptions import ClientError

        try:
            obj = await s3.get_object(Bucket=bucket, Key=key)
            return json.loads(await obj["Body"].read())
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("NoSuchKey", "404"):
                raise
            return None


async def first_event(trigger: TrainingTrigger) -> dict:
    """What the trigger decides, awaited here: the operator's wait when it does not defer."""
    async for event in trigger.run():
        return event.payload
    raise RuntimeError("the training trigger ended without an event")
