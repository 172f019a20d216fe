"""Text as the classifier reads it: lower case, no accents, emoji and shorthand spelled out.

Two forms of a message are made. `fold` keeps one character per character
of the original (so a date found in it can be cut out of the message as the
client wrote it); `words` goes further for intent rules: punctuation gone,
apostrophes dropped ("can't" -> "cant"), letters repeated three times or
more squeezed ("siiii" -> "si"), emoji and abbreviations replaced by words.
"""

from __future__ import annotations

import re
import unicodedata

# Emoji that say something the rules care about; the rest are dropped.
EMOJI_WORDS = {
    "\U0001f44d": " si ",  # thumbs up
    "\U0001f44c": " si ",  # OK hand
    "\u2705": " si ",  # check mark button
    "\u2714": " si ",  # check mark
    "\U0001f64c": " si ",  # raising hands
    "\U0001f197": " ok ",  # OK button
    "\U0001f621": " enojado ",  # pouting face
    "\U0001f620": " enojado ",  # angry face
    "\U0001f92c": " enojado ",  # cursing face
    "\U0001f44e": " no ",  # thumbs down
    "\u274c": " no ",  # cross mark
}

SHORTHAND = {
    "q": "que", "kiero": "quiero", "qiero": "quiero", "quero": "quiero", "k": "que", "ke": "que", "xq": "porque", "pq": "porque", "porq": "porque", "xk": "porque",
    "x": "por", "xfa": "por favor", "xfavor": "por favor", "porfa": "por favor", "porfis": "por favor", "plis": "please",
    "pls": "please", "plz": "please", "tmrw": "tomorrow", "tmr": "tomorrow", "tmw": "tomorrow", "tmrow": "tomorrow",
    "2moro": "tomorrow", "2morrow": "tomorrow", "tomorow": "tomorrow", "tommorow": "tomorrow", "tommorrow": "tomorrow",
    "mnn": "manana", "mna": "manana", "mnna": "manana", "maniana": "manana", "mañana": "manana",
    "tb": "tambien", "tmb": "tambien", "tmbn": "tambien", "dnd": "donde", "cdo": "cuando", "cuadno": "cuando",
    "msj": "mensaje", "msje": "mensaje", "mje": "mensaje", "msjs": "mensajes", "mjes": "mensajes", "wsp": "whatsapp",
    "wpp": "whatsapp", "wa": "whatsapp", "ud": "usted", "uds": "ustedes", "d": "de", "toy": "estoy", "sta": "esta",
    "oki": "ok", "okey": "ok", "okay": "ok", "okis": "ok", "oka": "ok", "okk": "ok", "okas": "ok", "okok": "ok", "k.": "ok",
    "thx": "thanks", "thnx": "thanks", "thanx": "thanks", "ty": "thanks", "tks": "thanks", "u": "you", "ur": "your",
    "r": "are", "im": "i am", "cant": "cannot", "dont": "do not", "wont": "will not", "didnt": "did not",
    "isnt": "is not", "couldnt": "could not", "cud": "could", "wanna": "want to", "gonna": "going to",
    "appt": "appointment", "appt.": "appointment", "apt": "appointment", "appts": "appointments",
    "sii": "si", "sip": "si", "sep": "si", "sipi": "si", "sis": "si", "yess": "yes", "yea": "yeah", "ya": "ya",
    "grax": "gracias", "graciass": "gracias", "grcs": "gracias", "bno": "bueno", "bn": "bien", "hla": "hola",
    "holi": "hola", "holis": "hola", "ola": "hola", "wenas": "buenas", "weno": "bueno", "tdo": "todo", "dps": "despues",
    "hs": "horas", "hrs": "horas", "hr": "hora", "min": "minutos", "mins": "minutos", "finde": "fin de semana",
    "sab": "sabado", "dom": "domingo", "vier": "viernes", "mier": "miercoles", "pls.": "please",
}

_REPEATS = re.compile(r"([a-z])\1{2,}")
_NOT_WORD = re.compile(r"[^a-z0-9:/ ]+")


def fold_char(ch: str) -> str:
    """One character, lower case, without its accent (always one character long)."""
    if ch in "’‘`´":
        return "'"
    decomposed = unicodedata.normalize("NFKD", ch)
    base = next((c for c in decomposed if not unicodedata.combining(c)), ch)
    lowered = base.lower()
    return lowered if len(lowered) == 1 else ch


_ASCII_LOWER = {ord(c): ord(c.lower()) for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"}


def fold(text: str) -> str:
    """The message lower-cased and without accents, the same length as the original."""
    if text.isascii():
        return text.lower()
    # One translation table per message: only its few non-ASCII characters are decomposed.
    table: dict[int, str | int] = {ord(ch): fold_char(ch) for ch in set(text) if not ch.isascii()}
    table.update(_ASCII_LOWER)
    return text.translate(table)


def words(text: str) -> str:
    """The message as space-separated plain words for the intent rules (see the module docstring)."""
    for emoji, meaning in EMOJI_WORDS.items():
        text = text.replace(emoji, meaning)
    folded = fold(text).replace("'", "")
    folded = _REPEATS.sub(r"\1", folded)
    folded = _NOT_WORD.sub(" ", folded)
    tokens = [SHORTHAND.get(token, token) for token in folded.split()]
    return " ".join(" ".join(tokens).split())
