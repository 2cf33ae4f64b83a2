"""``POST /webhooks/cloudwatch``: CloudWatch alarm state changes.

Two entrances share the path, each with its own credential:

- the alarm shapes (alarm action, EventBridge API destination) with
  ``Authorization: Bearer <alarm token>`` (``webhooks.cloudwatch.token_env``, credential
  ``alarm-token``); never the API token;
- SNS notifications, admitted by their signature and topic (credential ``sns:<topic>``).

The credential is checked before the body is parsed (bearer), or before anything but the
SNS envelope is read (SNS); an unauthenticated body is never parsed past the envelope.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from deployments import events
from deployments.receiver.bodies import parse_json, read_body
from deployments.receiver.context import Context
from deployments.receiver.errors import Refused, error
from deployments.signatures import sns_envelope, sns_envelope_refusal, verify_bearer
from flows.launch import printable
from rollback.models import utcnow

log = logging.getLogger("deployments.receiver")

ALARM_CREDENTIAL = "alarm-token"
NO_CREDENTIAL = "missing or invalid bearer token (the alarm token, webhooks.cloudwatch.token_env)"


def router(ctx: Context) -> APIRouter:
    api = APIRouter()

    @api.post("/webhooks/cloudwatch", status_code=202)
    async def cloudwatch(request: Request) -> JSONResponse:
        """A CloudWatch alarm state change: alarm action, EventBridge (alarm token), or
        an SNS notification (signed, from an accepted topic)."""
        body, message = await admit(ctx, request, "alarm request")
        if message is not None:
            return await sns(message)
        change = events.alarm_change(parse_json(body))
        if change is None:
            return error(400, "not a CloudWatch alarm state change (alarm action or EventBridge)")
        return await ctx.act(events.alarm_request(ctx.config.alarms, change), ALARM_CREDENTIAL)

    async def sns(message: Mapping[str, str]) -> JSONResponse:
        answer = await sns_answer(ctx, message)
        if answer is not None:
            return answer
        topic = message["TopicArn"]
        change = events.alarm_change(inner_message(message))
        if change is None:
            return JSONResponse(
                {"status": "ignored", "reason": "SNS message is not a CloudWatch alarm"}
            )
        mapped = events.alarm_request(
            ctx.config.alarms, change, f"sns:{message.get('MessageId', '')[:200]}"
        )
        return await ctx.act(mapped, f"sns:{topic}")

    return api


async def admit(ctx: Context, request: Request, what: str) -> tuple[bytes, dict[str, str] | None]:
    """The body of a request to an AWS entrance, and its SNS envelope when it came by SNS
    (its signature still to verify: ``sns_answer``); without one, the body was admitted by
    the alarm token. Refused (401) otherwise, before the body is parsed past the envelope."""
    body = await read_body(request, ctx.hooks.max_body_bytes)
    headers = request.headers
    if headers.get("x-amz-sns-message-type") or not headers.get("authorization"):
        message = sns_message(body)
        if message is None:
            raise Refused(401, NO_CREDENTIAL)
        return body, message
    refusal = alarm_token_refusal(ctx, headers.get("authorization"))
    if refusal:
        ctx.refusals.note(f"{what} refused: %s", refusal)
        raise Refused(401, refusal)
    return body, None


async def confirm_subscription(ctx: Context, message: Mapping[str, str]) -> JSONResponse:
    """Confirm an SNS subscription of an allowed topic (checked by the caller)."""
    if not ctx.hooks.sns.confirm_subscriptions:
        return JSONResponse({"status": "ignored", "reason": "subscriptions are not confirmed"})
    url = message.get("SubscribeURL", "")
    if not ctx.verifier.url_allowed(url):
        return error(400, "SubscribeURL is not an SNS host")
    try:
        await ctx.verifier.confirm(url)
    except (OSError, ValueError) as exc:
        return error(502, f"could not confirm the subscription: {type(exc).__name__}")
    log.info("confirmed SNS subscription to %s", printable(message["TopicArn"]))
    return JSONResponse({"status": "confirmed", "topic": message["TopicArn"]})


def alarm_token_refusal(ctx: Context, header: str | None) -> str | None:
    """Why the alarm bearer token is refused, or None. Fails closed: no token
    configured, or a token equal to the API token, admits nothing."""
    token = ctx.secret(ctx.hooks.cloudwatch.token_env)
    if not token:
        return (
            "alarm requests are refused: no alarm token is set "
            f"(environment variable {ctx.hooks.cloudwatch.token_env}, "
            "webhooks.cloudwatch.token_env)"
        )
    api_token = ctx.secret(ctx.hooks.api_token_env)
    if api_token and hmac.compare_digest(token.encode(), api_token.encode()):
        return (
            "alarm requests are refused: the alarm token equals the API token "
            "(webhooks.cloudwatch.token_env and webhooks.api_token_env): give each its own"
        )
    if not verify_bearer(token, header):
        return NO_CREDENTIAL
    return None


async def sns_answer(ctx: Context, message: Mapping[str, str]) -> JSONResponse | None:
    """The answer to an SNS message that is not a verified Notification: a refusal of
    its envelope (topic, age, region) or signature, a subscription confirmation, or
    "ignored"; None when it is a verified Notification for the caller to act on."""
    cfg = ctx.hooks.sns
    refusal = sns_envelope_refusal(
        message,
        cfg.topic_arns,
        utcnow(),
        cfg.max_age_s,
        cfg.clock_skew_s,
        ctx.verifier.region_of,
    )
    if refusal:
        ctx.refusals.note(
            "SNS message %s from %s refused: %s",
            message.get("MessageId"),
            message.get("TopicArn"),
            refusal[1],
        )
        return error(*refusal)
    ok, why = await ctx.verifier.verify(message)
    if not ok:
        ctx.refusals.note("SNS message %s refused: %s", message.get("MessageId"), why)
        return error(401, f"SNS signature not verified: {why}")
    kind = message["Type"]
    if kind == "SubscriptionConfirmation":
        return await confirm_subscription(ctx, message)
    if kind != "Notification":
        return JSONResponse({"status": "ignored", "reason": f"SNS {kind}"})
    return None


def sns_message(body: bytes) -> dict[str, str] | None:
    """The SNS envelope of an unauthenticated body, or None (junk: never a 400 or 500,
    the caller answers 401)."""
    try:
        return sns_envelope(parse_json(body))
    except Refused:
        return None


def inner_message(message: Mapping[str, str]) -> Any:
    """The JSON inside a verified Notification's Message (a CloudWatch alarm, an
    EventBridge event), or None."""
    try:
        return parse_json((message.get("Message") or "").encode())
    except Refused:
        return None
