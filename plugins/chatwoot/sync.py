"""What the hub keeps in step with Chatwoot, as durable plugin jobs.

- `push` (key `contact:<hub id>`, coalesced for `coalesce_seconds`): the
  contact's context as custom attributes on its Chatwoot contact(s),
  creating the Chatwoot contact first when the tenant wants that.
- `note` (one key per event): a private note in the client's most recent
  conversation.
- `link` (keyed by the evidence, so a redelivery does nothing): a Chatwoot
  contact's id, phone and email linked to one hub contact; a second Chatwoot
  contact landing on the same hub contact becomes a merge proposal.
- `agent_reply` and `status` (keyed by Chatwoot's message id / delivery id):
  an agent's reply is recorded on the hub and hands the conversation to
  humans (the bot stays silent); resolving it in Chatwoot gives it back.
- `handoff` (one per hand-off): the conversation opened to the agents in
  Chatwoot, assigned to the tenant's team or agent, with a private note.

A 429, a 5xx or no answer raises `TransientError` (the job backs off and
runs again); any other Chatwoot error raises `PermanentError`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from hub import ContactView, HubPort, Job, PermanentError, TransientError

from .client import ChatwootClient, ChatwootError
from .notes import WHEN, note_text
from .runtime import CHANNEL, IDENTITY, MEDIUM, NAME, ChatwootPlugin

PUSH = "push"
NOTE = "note"
LINK = "link"
AGENT_REPLY = "agent_reply"
STATUS = "status"
HANDOFF = "handoff"
FAILURE_CHECK = "failure_check"
FAILURE_CHECK_SECONDS = 60.0
FAILURE_CHECKS = 8
"""How long after a provider's failure report to look whether the notification found another channel."""
AGENT_REPLIED = "an agent replied in Chatwoot"
"""The hand-off reason when an agent answers: Chatwoot already has the conversation, nothing to open."""
BOT_OFF = "the bot is off for Chatwoot conversations"
"""The hand-off reason when the tenant keeps the bot out of Chatwoot conversations."""
PROPOSALS_KEY = "merge_proposals"
"""`hub.set_plugin_data` key of the open merge proposals: {"items": [{"keep", "merge", "hub_contact", "evidence"}]}."""

CONSENT_MEDIUMS = (("whatsapp", "phone"), ("sms", "phone"), ("email", "email"))
CONSENT_VALUES = ["yes", "opted out", "no address"]

# (key, display name, display type (0 text, 1 number, 4 link, 5 date, 6 list), list values)
ATTRIBUTES: tuple[tuple[str, str, int, list[str]], ...] = (
    ("hub_next_appointment", "Next appointment", 5, []),
    ("hub_next_time", "Next appointment: time", 0, []),
    ("hub_next_service", "Next appointment: service", 0, []),
    ("hub_last_appointment", "Last appointment", 5, []),
    ("hub_appointments", "Appointments", 1, []),
    ("hub_no_shows", "No-shows", 1, []),
    ("hub_consent_whatsapp", "Consent: WhatsApp", 6, CONSENT_VALUES),
    ("hub_consent_sms", "Consent: SMS", 6, CONSENT_VALUES),
    ("hub_consent_email", "Consent: email", 6, CONSENT_VALUES),
    ("hub_last_reminder", "Last reminder", 0, []),
    ("hub_link", "Client in the hub", 4, []),
)


def attributes_for(view: ContactView, *, now: dt.datetime, link: str, clock: Callable[[dt.datetime], str]) -> dict[str, Any]:
    """The Chatwoot custom attributes that show a contact's context (dates as ISO 8601; `clock` writes a local time)."""
    upcoming = view.upcoming(now)
    past = view.past(now)
    reminders = [n for n in view.notifications if "reminder" in n.kind and n.due_at <= now]
    consent: dict[str, str] = {}
    for medium, kind in CONSENT_MEDIUMS:
        identities = [i for i in view.identities if i.kind == kind]
        if not identities:
            consent[medium] = "no address"
        else:
            consent[medium] = "opted out" if all(medium in i.opted_out for i in identities) else "yes"
    return {
        "hub_next_appointment": upcoming[0].start_at.isoformat() if upcoming else None,
        # Chatwoot shows a date attribute without its time: the time goes beside it, as the client's clock reads it.
        "hub_next_time": clock(upcoming[0].start_at) if upcoming else "",
        "hub_next_service": (upcoming[0].service or "") if upcoming else "",
        "hub_last_appointment": past[0].start_at.isoformat() if past else None,
        "hub_appointments": len(view.appointments),
        "hub_no_shows": view.no_shows,
        "hub_consent_whatsapp": consent["whatsapp"],
        "hub_consent_sms": consent["sms"],
        "hub_consent_email": consent["email"],
        "hub_last_reminder": f"{reminders[0].kind}: {reminders[0].status}" if reminders else "",
        "hub_link": link,
    }


def chatwoot_ids(view: ContactView) -> list[int]:
    """The Chatwoot contact ids linked to a hub contact, oldest link first."""
    return [int(value) for value in view.addresses(IDENTITY) if value.isdigit()]


def evidence_key(chatwoot_id: int, phone: str | None, email: str | None) -> str:
    """A job key that is the same for the same evidence, so a redelivered webhook links nothing twice."""
    digest = hashlib.sha256(json.dumps([chatwoot_id, phone or "", email or ""]).encode()).hexdigest()[:24]
    return f"link:{chatwoot_id}:{digest}"


async def latest_conversation(client: ChatwootClient, contact_ids: list[int], inbox_id: int | None = None) -> int | None:
    """The display id of the most recently active conversation of these contacts (in one inbox, if given)."""
    best: tuple[int, int] | None = None
    for contact_id in contact_ids:
        try:
            conversations = await client.contact_conversations(contact_id)
        except ChatwootError as exc:
            if exc.status == 404:  # merged away in Chatwoot since
                continue
            raise
        for conversation in conversations:
            if inbox_id is not None and conversation.get("inbox_id") != inbox_id:
                continue
            activity = int(conversation.get("last_activity_at") or conversation.get("timestamp") or 0)
            if best is None or activity > best[0]:
                best = (activity, int(conversation["id"]))
    return best[1] if best else None


class Sync:
    """The job handlers and the hooks' entry points that enqueue them."""

    def __init__(self, plugin: ChatwootPlugin) -> None:
        self.plugin = plugin
        self.hub: HubPort = plugin.hub
        self.log = structlog.get_logger("plugins.chatwoot")

    def register(self) -> None:
        """Register every job handler with the hub (from `on_startup`)."""
        handlers: dict[str, Callable[[Job], Awaitable[None]]] = {
            PUSH: self.run_push, NOTE: self.run_note, LINK: self.run_link, AGENT_REPLY: self.run_agent_reply,
            STATUS: self.run_status, HANDOFF: self.run_handoff, FAILURE_CHECK: self.run_failure_check,
        }
        for kind, handler in handlers.items():
            self.hub.handle_jobs(NAME, kind, handler)

    # --- enqueueing ---------------------------------------------------------------

    async def schedule_push(self, tenant: str, contact_id: int) -> None:
        """Queue an attribute update for a contact; updates within `coalesce_seconds` go out as one."""
        settings = self.plugin.require_settings(tenant)
        await self.hub.enqueue_job(
            NAME, tenant, PUSH, f"contact:{contact_id}", {"contact_id": contact_id}, delay_seconds=settings.coalesce_seconds
        )

    async def schedule_note(self, tenant: str, key: str, *, text: str, contact_id: int | None = None, chatwoot_id: int | None = None) -> None:
        """Queue one private note (once per key) for a hub contact or a Chatwoot contact."""
        await self.hub.enqueue_job(
            NAME, tenant, NOTE, f"note:{key}", {"contact_id": contact_id, "chatwoot_id": chatwoot_id, "text": text}, once=True
        )

    async def appointment_note(self, tenant: str, *, contact_id: int, appointment_id: int, change: str, start: dt.datetime,
                               service: str | None, version: str) -> None:
        """Queue the note for a booking made, moved or canceled, or a no-show."""
        profile = await self.hub.tenant(tenant)
        when = self.hub.render_inline(WHEN, locale=profile.locale, timezone=profile.timezone, context={"start": start.isoformat()})
        key = "created" if change in ("created", "reinstated") else change
        text = note_text(profile.locale, key, when=when, service=f" ({service})" if service else "")
        await self.schedule_note(tenant, f"appointment:{appointment_id}:{change}:{version}", text=text, contact_id=contact_id)

    async def schedule_failure_check(self, tenant: str, contact_id: int, notification_id: int) -> None:
        """A provider could not deliver a notification: look a little later whether another channel did."""
        await self.hub.enqueue_job(NAME, tenant, FAILURE_CHECK, f"failure:{notification_id}", {
            "contact_id": contact_id, "notification_id": notification_id,
        }, delay_seconds=FAILURE_CHECK_SECONDS, once=True)

    # --- handlers -----------------------------------------------------------------

    async def run_failure_check(self, job: Job) -> None:
        """Note a notification that failed on every channel; wait while the outbox is still trying others."""
        view = await self.hub.contact_view(job.tenant, int(job.payload["contact_id"]))
        notification = next((n for n in view.notifications if n.id == int(job.payload["notification_id"])), None)
        if notification is None or notification.status not in ("failed", "pending", "sending"):
            return
        if notification.status != "failed":
            if job.attempt >= FAILURE_CHECKS:
                return  # still pending after eight looks (about ten minutes): re-armed for later, not a failure
            raise TransientError("the outbox is still trying other channels", retry_after=FAILURE_CHECK_SECONDS)
        profile = await self.hub.tenant(job.tenant)
        await self.schedule_note(
            job.tenant, f"failed:{notification.id}", contact_id=view.id,
            text=note_text(profile.locale, "reminder_failed", kind=notification.kind),
        )

    async def run_push(self, job: Job) -> None:
        """Push one contact's context to its Chatwoot contact(s)."""
        settings = self.plugin.require_settings(job.tenant)
        client = self.plugin.client(job.tenant)
        view = await self.hub.contact_view(job.tenant, int(job.payload["contact_id"]))
        ids = chatwoot_ids(view)
        try:
            if not ids and settings.create_contacts:
                ids = [await self._create_contact(job.tenant, client, view, settings.inbox_id)]
            if not ids:
                return
            profile = await self.hub.tenant(job.tenant)

            def clock(moment: dt.datetime) -> str:
                return self.hub.render_inline(
                    "{{ t | time }}", locale=view.locale or profile.locale, timezone=view.timezone or profile.timezone,
                    context={"t": moment.isoformat()},
                )

            attributes = attributes_for(
                view, now=dt.datetime.now(dt.UTC), link=f"{self.hub.public_url}/api/v1/contacts/{view.id}", clock=clock
            )
            for index, chatwoot_id in enumerate(ids):
                try:
                    await client.update_contact(chatwoot_id, {"custom_attributes": attributes})
                except ChatwootError as exc:
                    # A second Chatwoot contact merged away there since: the first one carries the context.
                    if exc.status == 404 and index > 0:
                        continue
                    raise
        except ChatwootError as exc:
            raise exc.as_channel_error() from None
        self.log.info("chatwoot_contact_pushed", tenant=job.tenant, contact=view.id, chatwoot_contacts=len(ids))

    async def _create_contact(self, tenant: str, client: ChatwootClient, view: ContactView, inbox_id: int) -> int:
        phones, emails = view.addresses("phone"), view.addresses("email")
        if not phones and not emails:
            raise PermanentError("the contact has no phone or email to create a Chatwoot contact with")
        fields: dict[str, Any] = {"inbox_id": inbox_id, "name": view.name or (phones or emails)[0]}
        if phones:
            fields["phone_number"] = phones[0]
        if emails:
            fields["email"] = emails[0]
        created = await client.create_contact(fields)
        chatwoot_id = int(created["id"])
        await self.hub.link_identities(tenant, [(IDENTITY, str(chatwoot_id)), *[("phone", p) for p in phones[:1]]], reason="chatwoot contact created")
        self.log.info("chatwoot_contact_created", tenant=tenant, contact=view.id, chatwoot_contact=chatwoot_id)
        return chatwoot_id

    async def run_note(self, job: Job) -> None:
        """Post one private note in the client's most recent conversation (none: nothing to do)."""
        client = self.plugin.client(job.tenant)
        ids: list[int]
        if job.payload.get("chatwoot_id") is not None:
            ids = [int(job.payload["chatwoot_id"])]
        else:
            ids = chatwoot_ids(await self.hub.contact_view(job.tenant, int(job.payload["contact_id"])))
        if not ids:
            return
        try:
            conversation = await latest_conversation(client, ids)
            if conversation is None:
                self.log.info("chatwoot_note_skipped", tenant=job.tenant, reason="no conversation")
                return
            await client.post_message(conversation, str(job.payload["text"]), private=True)
        except ChatwootError as exc:
            raise exc.as_channel_error() from None

    async def run_link(self, job: Job) -> None:
        """Link a Chatwoot contact's id, phone and email to one hub contact; propose merges; push its context."""
        contact_id = await self.link(job.tenant, job.payload)
        await self.schedule_push(job.tenant, contact_id)

    async def link(self, tenant: str, evidence: dict[str, Any]) -> int:
        """Link a Chatwoot contact's evidence to one hub contact and propose the merges it reveals; returns the hub contact id."""
        chatwoot_id = int(evidence["chatwoot_id"])
        addresses = [(IDENTITY, str(chatwoot_id))]
        addresses += [("phone", evidence["phone"])] if evidence.get("phone") else []
        addresses += [("email", evidence["email"])] if evidence.get("email") else []
        contact_id = await self.hub.link_identities(tenant, addresses, name=evidence.get("name") or None, reason="chatwoot contact")
        view = await self.hub.contact_view(tenant, contact_id)
        for other in chatwoot_ids(view):
            if other != chatwoot_id:
                await self.propose_merge(tenant, view, keep=min(other, chatwoot_id), merge=max(other, chatwoot_id))
        return view.id

    async def push_now(self, tenant: str, contact_id: int) -> bool:
        """Push one contact's context at once (the backfill); False when Chatwoot asked to wait, so it is queued instead."""
        try:
            await self.run_push(Job(tenant, NAME, PUSH, f"contact:{contact_id}", {"contact_id": contact_id}, 1))
        except TransientError:
            await self.schedule_push(tenant, contact_id)
            return False
        return True

    async def propose_merge(self, tenant: str, view: ContactView, *, keep: int, merge: int) -> bool:
        """Record that two Chatwoot contacts are one hub contact, and say so in a private note; False if already proposed."""
        stored = await self.hub.get_plugin_data(NAME, tenant, PROPOSALS_KEY) or {"items": []}
        items: list[dict[str, Any]] = list(stored.get("items") or [])
        if any(item["keep"] == keep and item["merge"] == merge for item in items):
            return False
        evidence = ", ".join(view.addresses("phone") + view.addresses("email")) or f"hub contact {view.id}"
        items.append({"keep": keep, "merge": merge, "hub_contact": view.id, "evidence": evidence,
                      "proposed_at": dt.datetime.now(dt.UTC).isoformat()})
        await self.hub.set_plugin_data(NAME, tenant, PROPOSALS_KEY, {"items": items})
        profile = await self.hub.tenant(tenant)
        text = note_text(profile.locale, "merge", other=str(keep), evidence=evidence)
        await self.schedule_note(tenant, f"merge:{keep}:{merge}", text=text, chatwoot_id=merge)
        self.log.info("chatwoot_merge_proposed", tenant=tenant, keep=keep, merge=merge, contact=view.id)
        return True

    async def proposals(self, tenant: str) -> list[dict[str, Any]]:
        """The open merge proposals of a tenant."""
        stored = await self.hub.get_plugin_data(NAME, tenant, PROPOSALS_KEY) or {}
        return list(stored.get("items") or [])

    async def confirm_merge(self, tenant: str, keep: int, merge: int) -> dict[str, Any]:
        """A person confirmed a proposal: merge in Chatwoot (cannot be undone there) and close the proposal."""
        items = await self.proposals(tenant)
        match = [item for item in items if item["keep"] == keep and item["merge"] == merge]
        if not match:
            raise PermanentError(f"no open merge proposal keeps Chatwoot contact {keep} and merges {merge}")
        result = await self.plugin.client(tenant).merge_contacts(keep, merge)
        remaining = [item for item in items if item not in match]
        await self.hub.set_plugin_data(NAME, tenant, PROPOSALS_KEY, {"items": remaining})
        self.log.info("chatwoot_merge_confirmed", tenant=tenant, keep=keep, merge=merge)
        return result

    async def run_agent_reply(self, job: Job) -> None:
        """Record an agent's reply on the hub and hand the conversation to humans: the bot stays silent in it."""
        payload = job.payload
        contact_id = await self.hub.find_contact_id(job.tenant, IDENTITY, str(payload["chatwoot_id"]))
        if contact_id is None:
            # The link job for this contact was queued first; it has not run yet.
            raise TransientError(f"Chatwoot contact {payload['chatwoot_id']} is not linked to a hub contact yet")
        sent_at = dt.datetime.fromisoformat(payload["sent_at"]) if payload.get("sent_at") else None
        conversation = await self.hub.record_outbound(
            job.tenant, contact_id=contact_id, medium=MEDIUM, channel=CHANNEL, body=str(payload.get("body") or ""),
            provider_id=str(payload["message_id"]), sent_at=sent_at,
        )
        if conversation is not None:
            await self.hub.hand_off(job.tenant, conversation, reason=AGENT_REPLIED, summary="")

    async def run_status(self, job: Job) -> None:
        """A Chatwoot conversation was resolved: the hub's conversation goes back to the bot."""
        if job.payload.get("status") != "resolved" or not str(job.payload.get("chatwoot_id") or "").isdigit():
            return
        contact_id = await self.hub.find_contact_id(job.tenant, IDENTITY, str(job.payload["chatwoot_id"]))
        if contact_id is None:
            return
        conversation = await self.hub.find_conversation_id(job.tenant, contact_id, MEDIUM)
        if conversation is not None:
            await self.hub.release(job.tenant, conversation, reason="resolved in Chatwoot")

    async def schedule_handoff(self, tenant: str, contact_id: int, *, reason: str, summary: str, key: str) -> bool:
        """Queue the hand-off's delivery to Chatwoot; False when the contact has no Chatwoot contact."""
        view = await self.hub.contact_view(tenant, contact_id)
        if not chatwoot_ids(view):
            return False
        await self.hub.enqueue_job(NAME, tenant, HANDOFF, f"handoff:{key}", {
            "contact_id": view.id, "reason": reason, "summary": summary,
        }, once=True)
        return True

    async def run_handoff(self, job: Job) -> None:
        """Open the client's latest Chatwoot conversation to the agents (team or agent assigned) with a note of what they want."""
        settings = self.plugin.require_settings(job.tenant)
        client = self.plugin.client(job.tenant)
        ids = chatwoot_ids(await self.hub.contact_view(job.tenant, int(job.payload["contact_id"])))
        profile = await self.hub.tenant(job.tenant)
        text = note_text(profile.locale, "handoff", reason=f"({job.payload['reason']})",
                         summary=str(job.payload.get("summary") or "-"))
        try:
            conversation = await latest_conversation(client, ids)
            if conversation is None:
                raise PermanentError("the client has no Chatwoot conversation to hand off")
            await client.toggle_status(conversation, "open")
            if settings.handoff_assignee_id is not None or settings.handoff_team_id is not None:
                await client.assign(conversation, assignee_id=settings.handoff_assignee_id, team_id=settings.handoff_team_id)
            await client.post_message(conversation, text, private=True)
        except ChatwootError as exc:
            raise exc.as_channel_error() from None
