"""The core's sub-commands, one module per group."""

from __future__ import annotations

import click

from hub.commands import admin_keys, appointments, chat, contacts, db, notifications, phones, plugins, serve, templates, tenants, users, webhooks


def add_builtin_commands(group: click.Group) -> None:
    """Attach every core command to the `hub` group."""
    for command in (
        serve.serve,
        serve.worker,
        db.db,
        plugins.plugins,
        plugins.tools,
        phones.phones,
        contacts.contacts,
        appointments.appointments,
        tenants.tenants,
        admin_keys.admin_keys,
        templates.templates,
        notifications.send,
        notifications.notifications,
        chat.chat,
        users.users,
        webhooks.webhooks,
    ):
        group.add_command(command)
