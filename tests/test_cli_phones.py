"""`hub phones normalize`: one output line per input line, and no config or database needed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.conftest import CliResult

RunCli = Callable[..., CliResult]

MX = "+525512345678"

# (stdin line, expected stdout line) with --region MX.
MX_LINES: list[tuple[str, str]] = [
    ("whatsapp:+5215512345678", MX),  # Twilio's WhatsApp address
    ("5215512345678", MX),  # a WhatsApp id: international without the +
    ("0052 55 1234 5678", MX),  # 00 exit code
    ("011 52 55 1234 5678", MX),  # 011 (NANP) exit code
    ("01 55 1234 5678", MX),  # Mexico's old long-distance trunk prefix
    ("044 55 1234 5678", MX),  # Mexico's old mobile prefix
    ("55 1234 5678", MX),
    ("55.1234.5678", MX),
    ("55-1234-5678", MX),
    ("(55) 1234-5678", MX),
    ("+52 (55) 1234-5678 ext. 12", MX),  # the extension is not part of the key
    ("５５ １２３４ ５６７８", MX),  # full-width digits
    ("٥٥١٢٣٤٥٦٧٨", MX),  # Arabic-Indic digits
    ("tel:+1 212 456 7890", "+12124567890"),
    ("011 15 1234-5678\tAR", "+5491112345678"),  # per-line region: Buenos Aires trunk 0, mobile 15
    ("020 7946 0018\tGB", "+442079460018"),  # UK trunk prefix 0
    ("600 123 456\tES", "+34600123456"),
    ("123", "INVALID\ttoo short"),
    ("call me", "INVALID\tnot a number"),
    ("", "INVALID\tempty"),
    ("+52 55 1234 5678 9999999", "INVALID\ttoo long"),
    ("+999 1234 5678", "INVALID\tunknown region"),
    ("55 1234 5678\tZZ", "INVALID\tunknown region"),
    ("whatsapp:+5215512345678", MX),  # a repeat still gets its own line
]


def test_normalize_prints_one_line_per_input_line_in_order(tmp_path: Path, run_cli: RunCli) -> None:
    # No config file anywhere (run_cli drops HUB_* and runs in an empty folder) and no database.
    assert not (tmp_path / "config.toml").exists()
    lines = [raw for raw, _ in MX_LINES]
    # One line with a Windows line ending, and no newline after the last line.
    stdin = "\n".join(lines[:6]) + "\r\n" + "\n".join(lines[6:])

    result = run_cli("phones", "normalize", "--region", "MX", input=stdin)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n") == [expected for _, expected in MX_LINES] + [""]
    assert result.stderr == ""


def test_normalize_without_region_and_with_a_broken_config(tmp_path: Path, run_cli: RunCli) -> None:
    # A config the command does not need must not stop it, even when it cannot be read.
    (tmp_path / "config.toml").write_text("[hub\nnot toml at all\n")
    stdin = "\n".join(
        [
            "+52 55 1234 5678",
            "5215512345678",  # bare digits: read as a WhatsApp id
            "55 1234 5678",  # a formatted national number cannot be placed without a region
            "55 1234 5678\tmx",  # unless the line names one (any case)
            "00 34 600 123 456",
        ]
    ) + "\n"

    result = run_cli("phones", "normalize", input=stdin)

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [MX, MX, "INVALID\tunknown region", MX, "+34600123456"]
