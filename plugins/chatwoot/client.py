"""A small async client for the parts of Chatwoot's application API (v1) the hub uses.

One `aiohttp.ClientSession` is shared; each `ChatwootClient` adds a
tenant's base URL, account and `api_access_token`. Errors carry the status
and say whether they are worth retrying (429, 5xx, no answer) through
`as_channel_error`, which maps them onto `hub.TransientError` and
`hub.PermanentError` for channels and plugin jobs alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hub import ChannelError, HubError, PermanentError, TransientError

if TYPE_CHECKING:
    import aiohttp

# aiohttp loads when the plugin first talks to its API: every `hub` command loads this module.


class ChatwootError(HubError):
    """Chatwoot answered with an error, or could not be reached (`status` None)."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after

    @property
    def transient(self) -> bool:
        """Worth retrying: no answer, 408, 429 or a 5xx."""
        return self.status is None or self.status in (408, 429) or self.status >= 500

    def as_channel_error(self) -> ChannelError:
        """The same failure as a hub.TransientError or hub.PermanentError."""
        code = str(self.status) if self.status is not None else None
        if self.transient:
            return TransientError(str(self), code=code, retry_after=self.retry_after)
        return PermanentError(str(self), code=code)


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


class ChatwootClient:
    """Chatwoot's application API for one tenant's account and token."""

    def __init__(
        self, session: aiohttp.ClientSession, *, base_url: str, account_id: int, token: str, timeout_seconds: float = 15.0
    ) -> None:
        import aiohttp

        self.session = session
        self.base = f"{base_url.rstrip('/')}/api/v1/accounts/{account_id}"
        self._headers = {"api_access_token": token, "Accept": "application/json"}
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)

    async def request(
        self, method: str, path: str, *, params: Mapping[str, Any] | None = None, json: Any = None
    ) -> Any:
        """One API call; the JSON body (None when empty). Raises ChatwootError."""
        import aiohttp

        try:
            async with self.session.request(
                method, f"{self.base}{path}", params=dict(params or {}), json=json, headers=self._headers, timeout=self._timeout
            ) as response:
                text = await response.text()
                if response.status >= 400:
                    raise ChatwootError(
                        f"Chatwoot {method} {path}: {response.status} {_error_text(text)}",
                        status=response.status, retry_after=_retry_after(response.headers.get("Retry-After")),
                    )
                if not text.strip():
                    return None
                return await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ChatwootError(f"Chatwoot {method} {path}: no answer ({type(exc).__name__})") from None

    # --- contacts ---------------------------------------------------------------

    async def contacts_page(self, page: int) -> tuple[list[dict[str, Any]], int]:
        """One page of the account's contacts and the total count."""
        body = await self.request("GET", "/contacts", params={"page": page, "sort": "name"}) or {}
        meta = body.get("meta") or {}
        return list(body.get("payload") or []), int(meta.get("count") or 0)

    async def create_contact(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Create a contact; returns it (Chatwoot wraps it in `payload.contact`)."""
        body = await self.request("POST", "/contacts", json=dict(fields))
        payload = body.get("payload", body) if isinstance(body, dict) else {}
        contact = payload.get("contact", payload) if isinstance(payload, dict) else None
        if not isinstance(contact, dict) or "id" not in contact:
            raise ChatwootError("Chatwoot created a contact but answered without it")
        return dict(contact)

    async def update_contact(self, contact_id: int, fields: Mapping[str, Any]) -> None:
        """Update a contact; `custom_attributes` are merged into the ones it has."""
        await self.request("PUT", f"/contacts/{contact_id}", json=dict(fields))

    async def contact_conversations(self, contact_id: int) -> list[dict[str, Any]]:
        """The contact's conversations, as Chatwoot lists them."""
        body = await self.request("GET", f"/contacts/{contact_id}/conversations")
        return list((body or {}).get("payload") or [])

    async def create_contact_inbox(self, contact_id: int, inbox_id: int) -> str:
        """Attach the contact to an inbox; returns the contact inbox's source id."""
        body = await self.request("POST", f"/contacts/{contact_id}/contact_inboxes", json={"inbox_id": inbox_id})
        return str((body or {}).get("source_id") or "")

    async def merge_contacts(self, base_contact_id: int, mergee_contact_id: int) -> dict[str, Any]:
        """Chatwoot's `contact_merge` action: the mergee is folded into the base and deleted (cannot be undone)."""
        body = await self.request(
            "POST", "/actions/contact_merge", json={"base_contact_id": base_contact_id, "mergee_contact_id": mergee_contact_id}
        )
        return dict(body or {})

    # --- conversations ----------------------------------------------------------

    async def create_conversation(self, *, source_id: str, inbox_id: int, contact_id: int) -> int:
        """Open a conversation for a contact inbox; returns its display id."""
        body = await self.request(
            "POST", "/conversations", json={"source_id": source_id, "inbox_id": inbox_id, "contact_id": contact_id, "status": "open"}
        )
        return int(body["id"])

    async def post_message(
        self, conversation_id: int, content: str, *, private: bool = False, template_params: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Post an outgoing message (or a private note) in a conversation; returns the message."""
        payload: dict[str, Any] = {"content": content, "message_type": "outgoing", "private": private, "content_type": "text"}
        if template_params:
            payload["template_params"] = dict(template_params)
        return dict(await self.request("POST", f"/conversations/{conversation_id}/messages", json=payload) or {})

    async def toggle_status(self, conversation_id: int, status: str) -> None:
        """Set a conversation's status: open, resolved, pending or snoozed."""
        await self.request("POST", f"/conversations/{conversation_id}/toggle_status", json={"status": status})

    async def assign(self, conversation_id: int, *, assignee_id: int | None = None, team_id: int | None = None) -> None:
        """Assign a conversation to an agent and/or a team."""
        body = {k: v for k, v in (("assignee_id", assignee_id), ("team_id", team_id)) if v is not None}
        await self.request("POST", f"/conversations/{conversation_id}/assignments", json=body)

    # --- custom attribute definitions ---------------------------------------------

    async def contact_attribute_definitions(self) -> list[dict[str, Any]]:
        """The account's contact attribute definitions."""
        return list(await self.request("GET", "/custom_attribute_definitions", params={"attribute_model": "1"}) or [])

    async def create_attribute_definition(self, definition: Mapping[str, Any]) -> dict[str, Any]:
        """Create one custom attribute definition."""
        return dict(await self.request("POST", "/custom_attribute_definitions", json=dict(definition)) or {})


def _error_text(text: str) -> str:
    # Chatwoot's bodies are {"error": ...}, {"message": ...} or {"errors": [...]}; keep it to one short line.
    return " ".join(text.split())[:200]
