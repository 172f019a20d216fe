"""Which of ten intents a client's message is, by rules over its words.

Rules rather than a trained model: the costly mistakes (silencing a client
who did not ask to stop, freeing a slot a client still wants) are the ones
a reviewer must be able to read and fix line by line, and the rules run in
microseconds with nothing to download.

Each intent has phrase patterns, matched on `text.words(message)` (lower
case, no accents, shorthand spelled out). The decision then goes by
priority: a request to stop wins, then a request for a person (or anger),
then the appointment actions (reschedule, cancel, confirm, book), then
availability, information and greetings; "other" when nothing matched.
Context (what the hub last sent, whether a yes is awaited) decides what a
bare "ok" or a thumbs-up means.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from . import when
from .text import words

INTENTS = ("book", "reschedule", "cancel", "confirm", "availability", "info", "human", "opt_out", "greeting", "other")


def _any(*patterns: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in patterns))


DAY = r"(?:lunes|martes|miercoles|jueves|viernes|sabado|domingo|monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
SLOT = r"(?:cita|citas|turno|turnos|hora|horas|reserva|consulta|sesion|appointment|appointments|booking|visit)"
MESSAGES = r"(?:mensajes?|recordatorios?|notificaciones?|avisos?|alertas?|whatsapps?|sms|textos?|messages?|texts?|reminders?|notifications?|alerts?)"

# Whole messages that are a carrier-style stop keyword (polite words around them allowed).
STOP_KEYWORDS = frozenset({"stop", "stopall", "unsubscribe", "baja", "alto", "quit", "end", "desuscribir", "desuscribirme", "optout"})
POLITE = frozenset({"por", "favor", "please", "gracias", "thanks", "thank", "you", "ya", "ahora", "now", "hola", "hi", "de", "una", "vez"})

OPT_OUT = _any(
    r"\bunsubscribe\b", r"\bopt (?:me )?out\b", r"\bdesuscrib",
    r"\bstop (?:sending|texting|messaging|contacting|writing|the messages|these messages|all messages|" + MESSAGES + r")",
    r"\bdo not (?:text|message|send|contact|write)(?: me| us)?\b(?!.*\b(?:yet|until)\b)",
    r"\bno more " + MESSAGES, r"\b(?:remove|take) me (?:off|from)\b", r"\bcancel (?:the |these |my |all |your )?(?:" + MESSAGES + r"|subscription)\b",
    r"\bno (?:me )?(?:envien|envies|manden|mandes|escriban|escribas|mandeis|envieis|escribais|contacten) mas\b",
    r"\bno (?:quiero|deseo|queremos) (?:recibir |que me (?:manden|envien|escriban) )?(?:mas |ningun |ninguna |ningunos )?" + MESSAGES,
    r"\bya no (?:me )?(?:envien|manden|escriban|mandes|envies|quiero (?:recibir )?(?:mas )?" + MESSAGES + r")",
    r"\b(?:dejen|deja|dejad|paren|para|parad|dejar|parar) de (?:enviar|mandar|escribir|molestar|enviarme|mandarme|escribirme|molestarme)",
    r"\b(?:darme|denme|deme|dame|dadme|me quiero dar|quiero darme|me doy|me pueden dar|me puedes dar|me podes dar) de baja\b",
    r"\bbaja (?:de |a )?(?:los |las |la |el |estos |estas )?(?:" + MESSAGES + r"|lista|suscripcion)\b",
    r"\b(?:sacar(?:me)?|quitar(?:me)?|sacame|quitame|saquenme|quitenme|borrar(?:me)?|borrame|borrenme|eliminar(?:me)?|eliminame|eliminenme) (?:de (?:la |su |tu |esta )?lista|de sus contactos|de (?:los |sus )?" + MESSAGES + r")",
    r"\b(?:cancelar|anular) (?:la |mi )?suscripcion\b",
    r"\b(?:cancelar|cancela|cancelen|anular|quitar|desactivar) (?:los |las |estos |estas |mis |todos los )?" + MESSAGES + r"\b",
)

HUMAN = _any(
    r"\b(?:hablar|comunicarme|comunicarse|charlar|contactar|contactarme) con (?:una |un |alguien|la |el |algun |alguna |otra )?(?:persona|humano|humana|alguien|recepcion|recepcionista|secretaria|doctor|doctora|dentista|encargad[oa]|responsable|asesor|asesora|agente|operador|operadora|profesional|dueno|duena|gerente|medico|medica|estilista)",
    r"\bpersona (?:real|de verdad|humana)\b", r"\bser humano\b", r"\bun humano\b", r"\bcon (?:una|alguna) persona\b",
    r"\b(?:me|nos) (?:puede|pueden|podes|podrias|podria|podrian|puedes) llamar\b", r"\b(?:llamame|llamenme|llameme|llamadme)\b",
    r"\bque me llame\b", r"\bquiero que me llamen\b", r"\b(?:pasame|paseme|pasenme|comunicame|comuniqueme) con\b",
    r"\batencion (?:humana|personal|al cliente)\b", r"\b(?:eres|sos|es) (?:un )?(?:bot|robot|maquina)\b", r"\bno (?:quiero|deseo) (?:hablar con )?(?:un |una )?(?:bot|robot|maquina)\b",
    r"\b(?:talk|speak|chat) (?:to|with) (?:a |an |the |some |your )?(?:real |actual |live )?(?:person|human|someone|somebody|anyone|agent|representative|rep|receptionist|staff|doctor|manager|operator|dentist|stylist|owner)",
    r"\breal person\b", r"\b(?:a|an actual|a live) human\b", r"\bhuman please\b", r"\b(?:please )?call me\b", r"\bgive me a call\b",
    r"\b(?:can|could) (?:someone|somebody|you) call\b", r"\bhave (?:someone|somebody) call\b", r"\boperator\b", r"\brepresentative\b",
    r"\bare you a (?:bot|robot|machine)\b", r"\bnot a (?:bot|robot)\b",
)

ANGER = _any(
    r"\b(?:una |que |esto es una |es una )(?:mierda|verguenza|estafa|porqueria|burla|tomadura de pelo)\b", r"\bpesimo\b", r"\b(?:estoy )?(?:harto|harta|hartos|hartas)\b",
    r"\binutiles?\b", r"\bno sirve(?:n)? (?:para )?nada\b", r"\bcarajo\b", r"\bjoder\b", r"\bputa\b", r"\benojado\b", r"\bindignad[oa]\b",
    r"\binaceptable\b", r"\bterrible service\b", r"\bridiculous\b", r"\buseless\b", r"\bworst\b", r"\bwtf\b", r"\bthis is a joke\b",
    r"\bunacceptable\b", r"\bscam\b", r"\bfatal (?:servicio|atencion)\b", r"\bfed up\b",
)

NOT_CANCEL = _any(r"\bno (?:quiero |quisiera |voy a |vayan a |hace falta )?cancel", r"\bdo not (?:want to )?cancel\b", r"\bnot (?:to )?cancel\b",
                  r"\bsin cancelar\b", r"\bcancellation policy\b", r"\bpolitica de cancelacion\b",
                  r"\bse (?:me |le |nos |les |te )?cancel", r"\bme cancelaron\b")
CANCEL = _any(
    r"\bcancel(?:ar|a|o|e|en|ame|amela|amelo|ala|alo|arla|arlo|ela|elo|enla|enlo|emos|arme|ame la|ar mi|ar la|ar el)?\b",
    r"\banul(?:ar|a|o|en|arla|arlo|ala|alo|ame)\b", r"\bdesisto\b",
    r"\bno (?:voy a |vamos a |va a )?(?:poder |podre |podremos |puedo |podemos |podria )?(?:ir|asistir|acudir|presentarme|venir)\b(?! tarde)",
    r"\bno (?:voy|vamos|ire|iremos|asistire|asistiremos)\b(?! a llegar)(?! tarde)", r"\bno puedo (?:ese dia|el " + DAY + r"|" + DAY + r"|manana|hoy|esa hora)\b",
    r"\bya no (?:la |lo )?(?:necesito|quiero|voy a necesitar)\b", r"\b(?:dar|den|da|de) de baja (?:la|el|mi) " + SLOT,
    r"\bcannot (?:make|come|attend|go|be there)\b", r"\bcan not (?:make|come|attend)\b", r"\bwill not (?:make|be able|come|be there)\b",
    r"\b(?:not|never) (?:going to|gonna) (?:make|come|be able)\b", r"\bunable to (?:attend|come|make)\b", r"\bwont be able\b",
    r"\b(?:have|need|want|would like) to cancel\b", r"\bcall(?:ing)? off\b",
)

# Words that offer or ask for another time after a "can't": "¿tienen el lunes?", "what about Friday?".
ALTERNATIVE = _any(r"\b(?:tienen|tenes|tienes|hay|puede ser|podria ser|que tal|y el|y si|what about|how about|is|do you have|could|can we|mejor|better)\b")

RESCHEDULE = _any(
    r"\bcambi(?:ar|arla|arlo|amela|ame|o|en|emos|a|e) (?:la |mi |el |de |a |para |)?(?:" + SLOT + r"|fecha|horario|dia)",
    r"\bcambiar(?:la|lo|mela|melo)\b", r"\bcambio de (?:hora|turno|cita|dia|fecha|horario)\b",
    r"\bmover(?:la|lo|mela|melo)?\b", r"\b(?:pasar|pasarla|pasarlo|pasamela|pasamelo|pasamos|pasemos|pasala|pasalo|pasas|pasame|correr|correrla|correrlo) (?:la cita |el turno |la hora |la reserva )?(?:al|para el|a la|a otro|a otra|para otro|para otra|para la)\b",
    r"\bre ?programar(?:la|lo)?\b", r"\bre ?agendar(?:la|lo|me)?\b", r"\bre ?agend", r"\botr[oa] (?:dia|horario|turno|momento|hora|fecha|cita|semana)\b",
    r"\b(?:posponer|aplazar|postergar|adelantar|atrasar|retrasar)(?:la|lo|mela|melo)?\b", r"\ben (?:vez|lugar) de\b",
    r"\bre ?schedul", r"\bre ?book", r"\bmove (?:my|the|it|our|this)\b", r"\bchange (?:my|the|our|this) (?:appointment|booking|time|day|date|slot|reservation)\b",
    r"\b(?:another|different|other|later|earlier) (?:day|time|date|slot)\b", r"\bpostpone\b", r"\bpush (?:it|my appointment|the appointment|back)\b",
    r"\binstead\b", r"\bswitch (?:it|to|my)\b",
)

CONFIRM_STRONG = _any(
    r"\bconfirm(?:o|ado|ada|amos|adisimo|ed|ing)?\b(?! (?:si|if|whether))", r"\bconfirmar (?:la|mi|el) (?:cita|turno|asistencia|hora)\b",
    r"\b(?:ahi|alli|alla) (?:estare|estaremos|voy|vamos|nos vemos|estoy)\b", r"\bnos vemos (?:manana|el|entonces|ahi|alla|pronto|a las)\b",
    r"\bcuent(?:en|a|e) conmigo\b", r"\basistire\b", r"\bsi (?:voy|asisto|vamos|ire|asistire|puedo ir)\b", r"\bvoy a ir\b(?! tarde)",
    r"\bi will be there\b", r"\bill be there\b", r"\bwill be there\b", r"\bsee you (?:then|tomorrow|there|on|at|soon)\b", r"\bcount me in\b",
    r"\bi am coming\b", r"\bsounds good\b", r"\bworks for me\b", r"\bde una\b",
)
YES = frozenset({
    "si", "ok", "vale", "dale", "listo", "perfecto", "perfect", "genial", "bueno", "va", "sale", "obvio", "correcto", "exacto",
    "afirmativo", "claro", "yes", "yep", "yeah", "sure", "yup", "great", "cool", "fine", "alright", "simon", "ya", "okidoki",
    "confirmo", "confirmado", "confirm", "confirmed", "excelente", "super", "de", "acuerdo", "supuesto", "seguro", "joya", "chevere",
    "bacan", "buenisimo", "okay", "nice", "deal", "absolutely", "definitely", "agreed", "ahi", "estare", "estamos",
})
SOCIAL = frozenset({"gracias", "muchas", "thanks", "thank", "you", "hola", "hi", "hello", "buenas", "buenos", "dias", "tardes",
                    "noches", "por", "favor", "please", "que", "muy", "bien", "todo", "entonces", "much", "so", "very", "then", "y", "and"})

# Counts as booking only when the message also names a day or a time ("¿puedo ir el sábado?", not "¿puedo ir con mi hija?").
BOOK_WITH_WHEN = _any(r"(?<!\bno )\b(?:quiero|quisiera|puedo|podria|podre|me gustaria|could i|can i) (?:ir|pasar|venir|atenderme|go|come)\b")

BOOK = _any(
    r"\b(?:pedir|sacar|reservar|agendar|hacer|coger|tomar|solicitar|programar|apartar|conseguir|separar) (?:una |un |otra |otro |)?(?:" + SLOT + r")\b",
    r"\b(?:quiero|quisiera|queria|necesito|necesitaria|me gustaria|busco|buscaba|me das|me da|me dan|me podes dar|me puedes dar|me pueden dar|me podrias dar|me puede dar|dame|deme) (?:pedir |sacar |reservar |agendar |tomar |)?(?:una |un |otra |otro |)(?:" + SLOT + r")\b",
    r"\bagend(?:ar|arme|ame|en|eme|amos)\b", r"\breserv(?:ar|arme|ame|o|en|a)\b", r"\banot(?:ame|arme|enme|eme|as)\b",
    r"\b(?:una|un) (?:cita|turno|hora|reserva|consulta) para\b", r"\bpedir otr[oa]\b",
    r"\b(?:book|booking)\b(?! a flight)", r"\b(?:make|get|set up|schedule|need|want|like|have) (?:an |a |my |another )?(?:appointment|visit|cleaning|checkup|check up|session|haircut|reservation)\b",
    r"\b(?:come in|come by|stop by|drop by|swing by)\b", r"\bcan i come\b", r"\bi would like (?:to come|an|a)\b", r"\breserve\b",
    r"\bappointment for\b",
)

AVAILABILITY = _any(
    r"\bdisponibilidad\b", r"\b(?:horas?|turnos?|horarios?|huecos?|citas?|lugar|espacios?) (?:libres?|disponibles?)\b",
    r"\bhuecos?\b", r"\b(?:hay|habra|habria|tienen|tenes|tienes|tendras|tendrian|tendran|tenian|queda|quedan|quedara) (?:algun |alguna |algo de |un |una |)?(?:hora|horas|turno|turnos|lugar|cita|citas|espacio|sitio|disponible|libre|algo)\b",
    r"\bcuando (?:hay|tienen|tenes|tienes|puedo ir|podria ir|me pueden atender|me podes atender|me atienden|hay lugar)\b",
    r"\bque (?:dias|horas|horarios|turnos) (?:hay|tienen|tenes|tienes|quedan|libres|disponibles)\b", r"\bpara cuando (?:hay|tienen|tenes)\b",
    r"\bavailab", r"\bopenings?\b(?! hours)", r"\b(?:free|open) (?:slots?|times?|spots?)\b", r"\bslots?\b", r"\bspots?\b",
    r"\bdo you have (?:anything|any|something|a slot|an opening|time|room|space)\b", r"\bwhen (?:can i come|are you free|is the next|is your next)\b",
    r"\bwhat (?:times|days|slots) (?:are|do you)\b", r"\bis " + DAY + r" (?:open|free|available|ok|possible)\b", r"\banything (?:on|for|this|next|tomorrow)\b",
)

INFO = _any(
    r"\bcuanto (?:cuesta|sale|vale|cobran|es|seria|salen|cuestan|valen|cobras|cobrais|dura)\b", r"\bprecios?\b", r"\btarifas?\b", r"\bcostos?\b",
    r"\bdonde (?:estan|quedan|queda|esta|se encuentran|los encuentro|atienden|es)\b", r"\bdireccion\b", r"\bubicacion\b", r"\bubicados\b",
    r"\bcomo (?:llego|llegar|se llega)\b", r"\bestacionamiento\b", r"\baparcamiento\b", r"\bparking\b", r"\baparcar\b",
    r"\bhorarios? (?:de )?(?:atencion|apertura|de trabajo|de la clinica|del local)\b", r"\bhorario\b(?! (?:libre|disponible))",
    r"\ba que hora (?:abren|cierran|atienden|abris|cerras|abre|cierra)\b", r"\bhasta que hora\b", r"\b(?:abren|abris|abre|atienden|trabajan|estan abiertos|esta abierto)\b",
    r"\b(?:aceptan|atienden|trabajan|toman|reciben) (?:con |por )?(?:obra social|seguro|prepaga|isapre|fonasa|eps|tarjeta|efectivo|mutua|bizum|transferencia)",
    r"\bformas? de pago\b", r"\bse puede pagar\b", r"\bque servicios\b", r"\bservicios\b", r"\binformacion\b", r"\binfo\b",
    r"\bhow much\b", r"\bprices?\b", r"\bcosts?\b", r"\bfees?\b", r"\brates\b", r"\bwhere (?:are you|is|are|do you)\b", r"\baddress\b",
    r"\blocation\b", r"\bdirections\b", r"\b(?:opening|business|office) hours\b", r"\byour hours\b", r"\bwhat time do you (?:open|close)\b",
    r"\bare you open\b", r"\bwhen do you (?:open|close)\b", r"\binsurance\b", r"\bdo you (?:accept|take)\b", r"\bpayment\b",
    r"\bdo you (?:do|offer)\b", r"\bservices\b", r"\binformation\b", r"\bhow long (?:does|is|will)\b",
    r"\bpolicy\b", r"\bpolitica\b",
)

GREETING = _any(
    r"\bhola\b", r"\bbuen(?:os|as)? (?:dias|dia|tardes|noches)\b", r"\bbuenas\b", r"\bque tal\b", r"\bsaludos\b", r"\bhey\b", r"\bhi\b",
    r"\bhello\b", r"\bgood (?:morning|afternoon|evening)\b", r"\bgracias\b", r"\bthanks?\b", r"\bthank you\b", r"\bchau\b", r"\bchao\b",
    r"\badios\b", r"\bhasta (?:luego|pronto|manana)\b", r"\bbye\b", r"\bque onda\b", r"\bbuen finde\b",
)


@dataclass(frozen=True)
class Context:
    """What the classifier may know besides the message."""

    last_outbound_kind: str | None = None
    """Kind of the hub's last message in the conversation: "reminder", "confirmation", "reply"..."""
    awaiting_yes: bool = False
    """The responder's last reply asked a yes/no question."""


NO_CONTEXT = Context()
APPOINTMENT_NOTICES = frozenset({"reminder", "confirmation", "reschedule"})


@dataclass(frozen=True)
class Classification:
    """An intent and the date and time expressions of the message, as written ("" when none)."""

    intent: str
    date: str = ""
    time: str = ""


def classify(message: str, context: Context | None = None) -> Classification:
    """The message's intent and its date and time expressions."""
    dates, times = when.find(message)
    intent = intent_of(message, context, found=(dates, times))
    # A move names the old day first and the wanted one last ("can't make Monday, is Wednesday open?").
    date = (dates[-1] if intent == "reschedule" else dates[0]).text if dates else ""
    time = (times[-1] if intent == "reschedule" else times[0]).text if times else ""
    return Classification(intent, date, time)


def intent_of(message: str, context: Context | None = None, *, found: tuple[list[when.Found], list[when.Found]] | None = None) -> str:
    """One of `INTENTS` for the message (`found`: its date and time expressions, when already looked for)."""
    context = context or NO_CONTEXT
    text = words(message)
    tokens = text.split()
    if not tokens:
        return "other"
    if _is_stop_keyword(tokens) or OPT_OUT.search(text):
        return "opt_out"
    if HUMAN.search(text) or ANGER.search(text):
        return "human"
    cancel = bool(CANCEL.search(text)) and not NOT_CANCEL.search(text)
    dates, times = found if found is not None else when.find(message)
    book = bool(BOOK.search(text)) or bool((dates or times) and BOOK_WITH_WHEN.search(text))
    avail = bool(AVAILABILITY.search(text))
    if RESCHEDULE.search(text) and not _only_booking_instead(text, book, cancel):
        return "reschedule"
    if cancel and (book or avail or len(dates) >= 2 or re.search(r"\b(?:pero|but|maybe|quizas|tal vez|better|mejor)\b.*\b" + DAY, text)):
        return "reschedule"
    if cancel and dates and ALTERNATIVE.search(text):
        return "reschedule"  # "no puedo ese día, ¿tienen el lunes?": the day named is the one wanted
    if NOT_CANCEL.search(text) and (dates or avail):
        return "reschedule"  # "no quiero cancelar, solo cambiar al jueves"
    if cancel:
        return "cancel"
    if CONFIRM_STRONG.search(text) and not avail and not book:
        return "confirm"
    if book:
        return "book"
    if avail:
        return "availability"
    if INFO.search(text):
        return "info"
    if _short_yes(tokens):
        if context.awaiting_yes or context.last_outbound_kind in (None, *APPOINTMENT_NOTICES):
            return "confirm"
        return "greeting"  # an "ok, thanks" to something that asked nothing
    if dates and len(tokens) <= 6:
        return "book" if context.last_outbound_kind not in APPOINTMENT_NOTICES else "reschedule"
    if GREETING.search(text):
        return "greeting"
    return "other"


def _is_stop_keyword(tokens: list[str]) -> bool:
    meaningful = [t for t in tokens if t not in POLITE]
    return len(meaningful) == 1 and meaningful[0] in STOP_KEYWORDS


def _short_yes(tokens: list[str]) -> bool:
    return len(tokens) <= 8 and any(t in YES for t in tokens) and all(t in YES or t in SOCIAL for t in tokens)


def _only_booking_instead(text: str, book: bool, cancel: bool) -> bool:
    # "otra cita" in "quiero otra cita" is a second booking, not a move, when nothing is being given up.
    return book and not cancel and bool(re.search(r"\botr[oa] (?:cita|turno|hora)\b", text)) and not re.search(
        r"\bcambi|\bmover|\bpasar|\breprogram|\bre ?agend|\bschedul|\binstead\b|\ben vez\b", text)
