"""An OpenAI Chat Completions stand-in on 127.0.0.1, for the real `openai` SDK pointed at it with `base_url`.

It speaks the wire format of `/work/shared/specs/openai/openapi.json`:
`POST /v1/chat/completions` with a bearer key, answers a
`chat.completion` (choices with the assistant message, `tool_calls` whose
`arguments` are a JSON string, `finish_reason`, `usage`), and errors as
`{"error": {"message", "type", "param", "code"}}`: 401 for a wrong key,
429 with `retry-after-ms` (the SDK retries it), 500, and answers slower
than the client's timeout.

What the "model" says is the test's: a `Brain` gets the request's
messages and tool names and returns either text or tool calls. Requests
are kept (`requests`) so tests can check what the hub sent (no phone
numbers, the tools offered...).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

Brain = Callable[[list[dict[str, Any]], list[str]], "Say"]


@dataclass(frozen=True)
class Say:
    """What the model answers: text, or calls of tools (name, arguments)."""

    text: str | None = None
    calls: tuple[tuple[str, dict[str, Any]], ...] = ()


@dataclass(frozen=True)
class Failure:
    """An error answer: HTTP status, error type and code, and headers (e.g. retry-after-ms)."""

    status: int
    type: str
    code: str | None
    message: str
    headers: dict[str, str] = field(default_factory=dict)


RATE_LIMITED = Failure(429, "requests", "rate_limit_exceeded", "Rate limit reached for gpt-4o-mini on requests per min (RPM): Limit 3, Used 3, Requested 1.", {"retry-after-ms": "20"})
SERVER_ERROR = Failure(500, "server_error", None, "The server had an error while processing your request. Sorry about that!")
QUOTA = Failure(429, "insufficient_quota", "insufficient_quota", "You exceeded your current quota, please check your plan and billing details.")


def echo_brain(messages: list[dict[str, Any]], tools: list[str]) -> Say:
    """A model that repeats the last client message: enough for latency measurements."""
    last = next((m for m in reversed(messages) if m.get("role") == "user"), {"content": ""})
    return Say(text=f"Recibido: {last.get('content')}")


class OpenAIStandIn:
    """The server; `base_url` (…/v1) is what the SDK is given."""

    def __init__(self, api_key: str = "sk-test-0123456789", brain: Brain = echo_brain) -> None:
        self.api_key = api_key
        self.brain = brain
        self.delay = 0.0
        """Seconds every answer waits before it is sent (a slow model; past the client's timeout, a timeout)."""
        self.requests: list[dict[str, Any]] = []
        """Every request body that passed authentication, in order."""
        self.attempts = 0
        """Every POST received, failed ones and retries included."""
        self._failures: list[Failure] = []
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    def fail_next(self, failure: Failure, count: int = 1) -> None:
        """Answer the next `count` requests with this error."""
        self._failures.extend([failure] * count)

    async def __aenter__(self) -> OpenAIStandIn:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._completions)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/v1"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @staticmethod
    def _error(failure: Failure) -> web.Response:
        body = {"error": {"message": failure.message, "type": failure.type, "param": None, "code": failure.code}}
        return web.json_response(body, status=failure.status, headers={"x-request-id": "req_standin", **failure.headers})

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        self.attempts += 1
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return self._error(Failure(401, "invalid_request_error", "invalid_api_key", "Incorrect API key provided: sk-wr***ng."))
        try:
            body = await request.json()
        except ValueError:
            return self._error(Failure(400, "invalid_request_error", None, "We could not parse the JSON body of your request."))
        problem = _invalid(body)
        if problem:
            return self._error(Failure(400, "invalid_request_error", None, problem))
        if self._failures:
            return self._error(self._failures.pop(0))
        self.requests.append(body)
        if self.delay:
            await asyncio.sleep(self.delay)
        tools = [t["function"]["name"] for t in body.get("tools") or []]
        said = self.brain(body["messages"], tools)
        message: dict[str, Any] = {"role": "assistant", "content": said.text, "refusal": None, "annotations": []}
        if said.calls:
            message["content"] = None
            message["tool_calls"] = [
                {"id": f"call_{next(self._ids)}", "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}
                for name, arguments in said.calls
            ]
        prompt = sum(len(str(m.get("content") or "")) for m in body["messages"]) // 4 + 10
        completion = len(json.dumps(message)) // 4
        return web.json_response({
            "id": f"chatcmpl-{next(self._ids)}", "object": "chat.completion", "created": int(time.time()), "model": body["model"],
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "tool_calls" if said.calls else "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
                      "completion_tokens_details": {"reasoning_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}},
            "service_tier": "default", "system_fingerprint": "fp_standin",
        })


def _invalid(body: Any) -> str | None:
    """What the API would refuse in a request (only what the hub could get wrong)."""
    if not isinstance(body, dict) or not body.get("model") or not isinstance(body.get("messages"), list) or not body["messages"]:
        return "'model' and a non-empty 'messages' are required."
    calls: set[str] = set()
    for message in body["messages"]:
        role = message.get("role")
        if role not in ("system", "developer", "user", "assistant", "tool"):
            return f"Invalid role {role!r}."
        if role == "assistant":
            calls.update(call["id"] for call in message.get("tool_calls") or [])
        if role == "tool" and (message.get("tool_call_id") not in calls or not isinstance(message.get("content"), str)):
            return "Messages with role 'tool' must be a response to a preceding message with 'tool_calls'."
    for tool in body.get("tools") or []:
        if tool.get("type") != "function" or not tool.get("function", {}).get("name"):
            return "Invalid 'tools': each needs type 'function' and a function name."
    return None
