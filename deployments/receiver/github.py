"""``POST /webhooks/github``: ``workflow_run`` and ``deployment_status`` deliveries,
admitted by their HMAC signature (credential ``github-hmac``) before the body is parsed."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from deployments import events
from deployments.deploy_success import github_deployment_success
from deployments.receiver.bake import bake_answer
from deployments.receiver.bodies import parse_json, read_body
from deployments.receiver.context import Context
from deployments.receiver.errors import error
from deployments.signatures import verify_github

CREDENTIAL = "github-hmac"


def router(ctx: Context) -> APIRouter:
    api = APIRouter()

    @api.post("/webhooks/github", status_code=202)
    async def github(request: Request) -> JSONResponse:
        """A GitHub webhook (``workflow_run``, ``deployment_status``), HMAC-signed."""
        cfg = ctx.hooks.github
        if cfg is None:
            return error(404, "GitHub webhooks are not configured (webhooks.github)")
        body = await read_body(request, ctx.hooks.max_body_bytes)
        delivery = request.headers.get("x-github-delivery", "").strip()[:200] or None
        signature = request.headers.get("x-hub-signature-256")
        if not verify_github(ctx.secret(cfg.secret_env), body, signature):
            ctx.refusals.note("GitHub delivery %s: bad or missing signature", delivery)
            return error(401, "missing or invalid X-Hub-Signature-256")
        payload = parse_json(body)
        mapped = events.github_event(request.headers.get("x-github-event"), delivery, payload, cfg)
        if isinstance(mapped, events.Ignored) and (
            success := github_deployment_success(payload, cfg)
        ):  # a successful deployment status starts its bake (verification)
            return await bake_answer(ctx, success, CREDENTIAL)
        return await ctx.act(mapped, CREDENTIAL)

    return api
