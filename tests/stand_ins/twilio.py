"""A Twilio stand-in: the Messages API the hub calls, and the webhooks Twilio sends back.

It speaks the wire format of `../shared/specs/twilio/twilio_api_v2010.json`
and WIRE.md section 1: form-encoded `POST
/2010-04-01/Accounts/{AccountSid}/Messages.json` with HTTP Basic auth
(AccountSid:AuthToken), a 201 JSON Message resource whose sid is SM + 32 hex,
error answers `{"code", "message", "more_info", "status"}` (the 2010 API's
legacy shape, which the SDK turns into TwilioRestException), and `GET
/2010-04-01/Accounts/{Sid}.json`. It checks what Twilio checks before
accepting a message (To, a sender, a body or a ContentSid, E.164 numbers,
matching whatsapp: prefixes, Content SIDs and ContentVariables JSON),
records every request, and can be told to fail: per To number, or the next
N requests, with a status, a Twilio code and a Retry-After.

Webhooks go the other way: `post_webhook` signs a form with the account's
auth token exactly as Twilio does (the SDK's RequestValidator, HMAC-SHA1
over the URL and the sorted fields) and `report_status` sends the status
callback of a message it created to that message's StatusCallback.
"""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import itertools
import json
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from multidict import MultiDict
from twilio.request_validator import SIGNATURE_HEADER, RequestValidator

API_VERSION = "2010-04-01"
_E164 = re.compile(r"\+[1-9]\d{1,14}")
_CONTENT_SID = re.compile(r"HX[0-9a-fA-F]{32}")
# A WhatsApp user who hides their number is addressed by a business-scoped user id (US.1349...).
_BUSINESS_SCOPED_ID = re.compile(r"[A-Z]{2}(?:\.ENT)?\.[A-Za-z0-9]{1,128}")
WHATSAPP = "whatsapp:"

# The CreateMessage form fields of the spec (twilio-oai requestBody), plus MessageIntent,
# which SDK 9.13.0 sends and the spec snapshot lacks (WIRE.md 1.4).
CREATE_FIELDS = frozenset({
    "To", "StatusCallback", "ApplicationSid", "MaxPrice", "ProvideFeedback", "Attempt", "ValidityPeriod",
    "ForceDelivery", "ContentRetention", "AddressRetention", "SmartEncoded", "PersistentAction", "TrafficType",
    "ShortenUrls", "ScheduleType", "SendAt", "SendAsMms", "ContentVariables", "RiskCheck", "From", "FallbackFrom",
    "MessagingServiceSid", "Body", "MediaUrl", "ContentSid", "MessageIntent",
})


@dataclass(frozen=True)
class Failure:
    """An error answer: HTTP status, Twilio code and message, and an optional Retry-After header."""

    status: int
    code: int
    message: str = "refused by the stand-in"
    retry_after: str | None = None


@dataclass
class Received:
    """One Messages.json request as it arrived."""

    account_sid: str
    form: MultiDict[str]
    authorization: str | None
    content_type: str
    answered: int = 0

    def get(self, name: str) -> str | None:
        return self.form.get(name)


def rfc2822(moment: dt.datetime) -> str:
    return email.utils.format_datetime(moment.astimezone(dt.UTC)).replace("-0000", "+0000")


def error_body(status: int, code: int, message: str) -> dict[str, Any]:
    return {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status}


def sign(url: str, params: Iterable[tuple[str, str]] | Mapping[str, str], token: str) -> str:
    """X-Twilio-Signature for a form posted to `url`, computed with the SDK's own validator."""
    items = params.items() if isinstance(params, Mapping) else params
    return RequestValidator(token).compute_signature(url, MultiDict(list(items)))


class TwilioStandIn:
    """The Messages API on 127.0.0.1; `accounts` maps Account SID to auth token."""

    def __init__(self, accounts: Mapping[str, str]) -> None:
        self.accounts = dict(accounts)
        self.received: list[Received] = []
        """Every Messages.json POST, accepted or not, in order."""
        self.messages: dict[str, dict[str, Any]] = {}
        """Created Message resources by sid."""
        self.callbacks: dict[str, str] = {}
        """sid -> the StatusCallback URL it was created with."""
        self.fail_to: dict[str, Failure] = {}
        """Failures by recipient: the To exactly as sent (`whatsapp:+34...` or `+34...`)."""
        self._fail_next: list[Failure] = []
        self.base_url = ""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._numbers = itertools.count(1)

    # --- control ----------------------------------------------------------------

    def fail_next(self, count: int, failure: Failure) -> None:
        """Answer the next `count` create requests (after authentication) with `failure`."""
        self._fail_next.extend([failure] * count)

    def accepted(self) -> list[Received]:
        """The requests that created a message."""
        return [r for r in self.received if r.answered == 201]

    # --- the API ----------------------------------------------------------------

    def _authenticated(self, request: web.Request, account_sid: str) -> bool:
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        try:
            login, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return scheme.lower() == "basic" and login == account_sid and self.accounts.get(account_sid) == password

    @staticmethod
    def _error(failure: Failure) -> web.Response:
        headers = {"Retry-After": failure.retry_after} if failure.retry_after is not None else None
        return web.json_response(error_body(failure.status, failure.code, failure.message), status=failure.status, headers=headers)

    def _validate(self, form: MultiDict[str]) -> Failure | None:
        """What Twilio refuses synchronously, with its codes."""
        to = form.get("To", "")
        sender = form.get("From", "")
        if not to:
            return Failure(400, 21604, "A 'To' phone number is required.")
        if not sender and not form.get("MessagingServiceSid"):
            return Failure(400, 21603, "A 'From' phone number is required.")
        if not (form.get("Body") or form.get("MediaUrl") or form.get("ContentSid")):
            return Failure(400, 21602, "Message body is required.")
        scoped = to.startswith(WHATSAPP) and _BUSINESS_SCOPED_ID.fullmatch(to.removeprefix(WHATSAPP))
        if not scoped and not _E164.fullmatch(to.removeprefix(WHATSAPP)):
            return Failure(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if sender and sender.startswith(WHATSAPP) != to.startswith(WHATSAPP):
            return Failure(400, 21910, "Invalid From and To pair. From and To should be of the same channel")
        if form.get("ContentSid") is not None:
            if not _CONTENT_SID.fullmatch(form["ContentSid"]):
                return Failure(400, 21655, "The ContentSid is Invalid")
            try:
                variables = json.loads(form.get("ContentVariables") or "{}")
            except ValueError:
                variables = None
            if not isinstance(variables, dict) or not all(isinstance(v, str) for v in variables.values()):
                return Failure(400, 21656, "The ContentVariables Parameter is invalid")
        return None

    async def _create(self, request: web.Request) -> web.Response:
        account_sid = request.match_info["account_sid"]
        form = MultiDict((k, str(v)) for k, v in (await request.post()).items())
        received = Received(account_sid, form, request.headers.get("Authorization"), request.content_type)
        self.received.append(received)
        response = self._answer(request, account_sid, form)
        received.answered = response.status
        return response

    def _answer(self, request: web.Request, account_sid: str, form: MultiDict[str]) -> web.Response:
        if not self._authenticated(request, account_sid):
            return self._error(Failure(401, 20003, "Authenticate"))
        if request.content_type != "application/x-www-form-urlencoded":
            return self._error(Failure(400, 20001, "Unsupported content type"))
        if self._fail_next:
            return self._error(self._fail_next.pop(0))
        to = form.get("To", "")
        failure = self.fail_to.get(to)
        if failure is None:
            failure = self._validate(form)
        if failure is not None:
            return self._error(failure)
        sid = "SM" + secrets.token_hex(16)
        now = rfc2822(dt.datetime.now(dt.UTC))
        service = form.get("MessagingServiceSid")
        resource = {
            "account_sid": account_sid,
            "api_version": API_VERSION,
            "body": form.get("Body", ""),
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": form.get("From"),
            "messaging_service_sid": service,
            "num_media": str(len(form.getall("MediaUrl", []))),
            "num_segments": "0" if service and not form.get("From") else "1",
            "price": None,
            "price_unit": None,
            "sid": sid,
            # Without a Messaging Service a new message is queued; with one, accepted (WIRE.md 1.2).
            "status": "accepted" if service else "queued",
            "subresource_uris": {"media": f"/{API_VERSION}/Accounts/{account_sid}/Messages/{sid}/Media.json"},
            "to": form["To"],
            "uri": f"/{API_VERSION}/Accounts/{account_sid}/Messages/{sid}.json",
        }
        self.messages[sid] = resource
        if form.get("StatusCallback"):
            self.callbacks[sid] = form["StatusCallback"]
        return web.json_response(resource, status=201)

    async def _account(self, request: web.Request) -> web.Response:
        sid = request.match_info["account_sid"]
        if not self._authenticated(request, sid):
            return self._error(Failure(401, 20003, "Authenticate"))
        stamp = "Thu, 30 Jul 2015 20:00:00 +0000"
        base = f"/{API_VERSION}/Accounts/{sid}"
        return web.json_response({
            "auth_token": self.accounts[sid], "date_created": stamp, "date_updated": stamp, "friendly_name": "Stand-in",
            "owner_account_sid": sid, "sid": sid, "status": "active",
            "subresource_uris": {"messages": f"{base}/Messages.json"}, "type": "Full", "uri": f"{base}.json",
        })

    # --- webhooks, Twilio -> hub ---------------------------------------------------

    async def post_webhook(
        self,
        url: str,
        params: Iterable[tuple[str, str]] | Mapping[str, str],
        *,
        token: str,
        deliver_to: str,
        signature: str | None = None,
        headers: Mapping[str, str] | None = None,
        proxy_prefix: str = "",
    ) -> tuple[int, str]:
        """POST a form to the hub as Twilio would, signed over the public `url`.

        The request goes to `deliver_to` (the hub's local address) with the
        path and query of `url`: the proxy in front of the hub, in effect.
        `proxy_prefix` is the part of the public path the proxy strips.
        `signature` replaces the computed one (a forgery).
        """
        items = list(params.items() if isinstance(params, Mapping) else params)
        public = urlsplit(url)
        target = deliver_to.rstrip("/") + public.path.removeprefix(proxy_prefix) + (f"?{public.query}" if public.query else "")
        sent_headers = {SIGNATURE_HEADER: signature if signature is not None else sign(url, items, token), **(headers or {})}
        if self._session is None:
            self._session = aiohttp.ClientSession()
        async with self._session.post(target, data=items, headers=sent_headers) as response:
            return response.status, await response.text()

    async def report_status(
        self, sid: str, status: str, *, deliver_to: str, error_code: str | None = None, error_message: str | None = None
    ) -> int:
        """Send the status callback of a message this stand-in created, as Twilio does after a send."""
        resource = self.messages[sid]
        whatsapp = resource["to"].startswith(WHATSAPP)
        params = [
            ("AccountSid", resource["account_sid"]),
            ("From", resource["from"] or ""),
            ("To", resource["to"]),
            ("MessageSid", sid),
            ("MessageStatus", status),
            ("SmsSid", sid),
            ("SmsStatus", status),
            ("ApiVersion", API_VERSION),
        ]
        if resource["messaging_service_sid"]:
            params.append(("MessagingServiceSid", resource["messaging_service_sid"]))
        if whatsapp:
            params += [("ChannelPrefix", "whatsapp"), ("ChannelInstallSid", "XE" + "0" * 32)]
            if status == "read":
                params.append(("EventType", "READ"))
        if error_code:
            params.append(("ErrorCode", error_code))
            if error_message:
                params.append(("ChannelStatusMessage" if whatsapp else "ErrorMessage", error_message))
        answered, _ = await self.post_webhook(
            self.callbacks[sid], params, token=self.accounts[resource["account_sid"]], deliver_to=deliver_to
        )
        return answered

    # --- life cycle ----------------------------------------------------------------

    async def __aenter__(self) -> TwilioStandIn:
        app = web.Application()
        app.router.add_post(f"/{API_VERSION}/Accounts/{{account_sid}}/Messages.json", self._create)
        app.router.add_get(f"/{API_VERSION}/Accounts/{{account_sid}}.json", self._account)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()
