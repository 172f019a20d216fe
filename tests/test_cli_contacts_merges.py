"""`hub contacts duplicates / merge / reject / unmerge / merges / add-address`, as an operator runs them."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CliResult, config_document, read_records, write_toml

RunCli = Callable[..., CliResult]

# Clinic's tenant region is ES. Rows 2-3: the same name and last eight digits, Spain and Mexico;
# 4-5: a Brazilian WhatsApp id without its ninth digit beside the 9-digit mobile; 6-8: two emails
# with one phone.
CLIENTS = "\n".join([
    "name,phone,whatsapp,email",
    "Ana Pérez,+34 612 34 56 78,,",
    "Ana Pérez,+52 33 1234 5678,,",
    "Bruno Costa,,+55 11 3456-7890,",
    "Bruno C.,+55 11 93456-7890,,",
    "Carla Gil,611 22 33 44,,carla@example.com",
    "Carla,,,carla.gil@clinica.example",
    ",611 22 33 44,,carla.gil@clinica.example",
]) + "\n"


@pytest.fixture
def config(tmp_path: Path, sqlite_url: str, record_file: Path) -> Path:
    return write_toml(tmp_path / "config.toml", config_document(sqlite_url, record_file=record_file))


def ok(result: CliResult) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def contacts_of(run_cli: RunCli, config: Path) -> dict[str, list[str]]:
    """Each live contact's name (or first address) -> its addresses."""
    rows = [json.loads(line) for line in ok(run_cli("contacts", "export", "--tenant", "clinic", config=config)).splitlines()]
    return {str(row["id"]): sorted(i["value"] for i in row["identities"]) for row in rows}


def proposal_ids(listing: str) -> dict[str, str]:
    """reason -> proposal id, from `hub contacts duplicates`."""
    return {m.group(2): m.group(1) for m in re.finditer(r"^proposal (\d+)(?: \[\w+\])?: .*?\): ([a-z0-9 ,]+?)(?: \(|$)", listing, re.M)}


def test_proposals_are_listed_accepted_rejected_and_merges_undone(tmp_path: Path, config: Path, run_cli: RunCli, record_file: Path) -> None:
    (tmp_path / "clients.csv").write_text(CLIENTS, encoding="utf-8")
    assert ok(run_cli("contacts", "import", str(tmp_path / "clients.csv"), "--tenant", "clinic", config=config)).strip() == (
        "7 rows: 6 contacts created, 7 identities added, 0 merged, 0 problems"
    )
    listing = ok(run_cli("contacts", "duplicates", "--tenant", "clinic", config=config))
    ids = proposal_ids(listing)
    assert set(ids) == {"same name, same last 8 digits", "brazil ninth digit", "conflicting identities"}, listing
    assert "(Ana Pérez)" in listing and "phone:+523312345678, phone:+34612345678" in listing
    assert "phone:+5511934567890, phone:+551134567890" in listing
    before = contacts_of(run_cli, config)
    assert len(before) == 6

    # Rejected: Bruno's two numbers stay two contacts, and the proposal leaves the open list.
    assert "stay apart" in ok(run_cli("contacts", "reject", ids["brazil ninth digit"], "--tenant", "clinic", config=config))
    # Accepted: the two Anas become one contact.
    merged = ok(run_cli("contacts", "merge", ids["same name, same last 8 digits"], "--tenant", "clinic", config=config))
    match = re.fullmatch(r"merged contact (\d+) into (\d+) \(merge (\d+)\)\n", merged)
    assert match is not None, merged
    absorbed, kept = match.group(1), match.group(2)
    after = contacts_of(run_cli, config)
    assert absorbed not in after and after[kept] == ["+34612345678", "+523312345678"]
    assert any(r["hook"] == "on_contact_linked" and r["contact_id"] == int(kept) for r in read_records(record_file))
    assert set(proposal_ids(ok(run_cli("contacts", "duplicates", "--tenant", "clinic", config=config)))) == {"conflicting identities"}

    # Undone: Ana's Mexican number is a contact of its own again; the audit trail keeps the merge.
    assert f"(merge {match.group(3)} undone)" in ok(run_cli("contacts", "unmerge", absorbed, "--tenant", "clinic", config=config))
    assert contacts_of(run_cli, config) == before
    audit = ok(run_cli("contacts", "merges", "--tenant", "clinic", config=config))
    assert re.search(rf"^merge {match.group(3)} .*: contact {absorbed} into {kept}: accepted proposal .*, undone ", audit, re.M), audit
    statuses = ok(run_cli("contacts", "duplicates", "--tenant", "clinic", "--all", config=config))
    assert "[rejected]" in statuses and statuses.count("\n") == 3

    # Mistakes are one line, exit status 1, naming what is wrong.
    again = run_cli("contacts", "merge", ids["brazil ninth digit"], "--tenant", "clinic", config=config)
    assert again.returncode == 1 and "already rejected" in again.stderr
    missing = run_cli("contacts", "unmerge", absorbed, "--tenant", "clinic", config=config)
    assert missing.returncode == 1 and f"contact {absorbed} was not merged" in missing.stderr


def test_add_address_links_the_number_a_person_gave(tmp_path: Path, config: Path, run_cli: RunCli) -> None:
    (tmp_path / "clients.csv").write_text("name,email\nLucía,lucia@example.com\n", encoding="utf-8")
    ok(run_cli("contacts", "import", str(tmp_path / "clients.csv"), "--tenant", "clinic", config=config))
    [contact_id] = contacts_of(run_cli, config)
    out = ok(run_cli("contacts", "add-address", contact_id, "Móvil: 612 34 56 78", "--tenant", "clinic", config=config))
    assert out.strip() == f"contact {contact_id}: phone +34612345678"
    out = ok(run_cli("contacts", "add-address", contact_id, "whatsapp:US.13491208655302741918", "--kind", "whatsapp_id",
                     "--tenant", "clinic", config=config))
    assert contacts_of(run_cli, config) == {contact_id: ["+34612345678", "US.13491208655302741918", "lucia@example.com"]}
    bad = run_cli("contacts", "add-address", contact_id, "+34 6l2 345 678", "--tenant", "clinic", config=config)
    assert bad.returncode == 1 and "phone: letters" in bad.stderr
