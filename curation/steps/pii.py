"""PII masking: ``pii``, for web text (OpenWebText by default).

E-mail addresses, URLs, IP addresses and phone numbers are replaced by typed
placeholders ``[EMAIL]``, ``[URL]``, ``[IP]``, ``[PHONE]``, in that order (an
e-mail's domain is not then taken for a URL). The first text of a changed turn
is kept in ``attrs["raw_text"]`` (when not already set), so masking can be
audited; counters ``masked_email`` ... per placeholder, ``turns_modified`` and
``modified`` (records). Nothing is dropped.

The patterns aim at few false positives on prose: a phone number needs 10 to 15
digits in phone-like groups (``+1 (415) 555-0132``, ``020 7946 0958``,
``415.555.0132``), or 7 in the ``555-0132`` shape; years, prices
(``$216,000``), dates (``9/06``, ``2019-01-05``), times (``10:30``), versions
(``1.2.3``), ``1.5 million`` and percentages are left alone. An IPv4 address
needs four octets of at most 255 (``1.2.3`` or ``999.1.1.1`` are not addresses); a
four-part version number such as ``2.0.1.7`` cannot be told from an address and is masked.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from curation.record import Record
from curation.steps._scope import applies, check_sources, with_text
from curation.steps.base import RecordStep, StepConfig, option, register_step

KINDS = ("email", "url", "ip", "phone")

_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_URL = re.compile(
    r"(?<![\w@])(?:(?:https?|ftp)://|www\.)[^\s<>\"'“”‘’()\[\]]+"
    r"|(?<![\w@./-])(?:[A-Za-z0-9-]+\.)+(?:com|org|net|edu|gov|io|co\.uk|info|biz)(?:/[^\s<>\"'“”()\[\]]*)?(?![\w-])",
)
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\w|\.\d)")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}(?![\w:])")
_PHONE = re.compile(
    r"(?<![\w$£€./-])"
    r"(?:"
    # international: +44 20 7946 0958, +1-415-555-0132
    r"\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]\d{2,4}){1,4}"
    # North American: (415) 555-0132, 415-555-0132, 415.555.0132, 415 555 0132
    r"|(?:\(\d{3}\)[ ]?|\d{3}[ .-])\d{3}[ .-]\d{4}"
    # national with a trunk 0: 020 7946 0958, 0171 234 5678
    r"|0\d{2,4}[ -]\d{3,4}[ -]?\d{3,4}"
    # local: 555-0132
    r"|\d{3}-\d{4}"
    r")"
    r"(?![\w/-]|[.,]\d)"
)
_PATTERNS = {"email": (_EMAIL,), "url": (_URL,), "ip": (_IPV4, _IPV6), "phone": (_PHONE,)}
_MIN_PHONE_DIGITS = 7


@dataclass(frozen=True)
class PiiConfig(StepConfig):
    kinds: tuple[str, ...] = option(KINDS, "what to mask", choices=KINDS)
    sources: tuple[str, ...] = option(("openwebtext",), "sources to apply to ('*' = all)")

    def check(self) -> None:
        super().check()
        check_sources("sources", self.sources)


@register_step
class Pii(RecordStep):
    name = "pii"
    description = "mask e-mails, URLs, IPs and phone numbers as [EMAIL] [URL] [IP] [PHONE] (raw text kept)"
    Config = PiiConfig

    def process(self, record: Record, counters: Counter[str]) -> Record:
        cfg: PiiConfig = self.config  # type: ignore[assignment]
        if not applies(cfg.sources, record["source"]):
            return record
        turns = []
        changed = False
        for t in record["turns"]:
            text, found = mask_pii(t["text"], kinds=cfg.kinds)
            if found:
                counters.update({f"masked_{k}": v for k, v in found.items()})
                counters["turns_modified"] += 1
                turns.append(with_text(t, text))
                changed = True
            else:
                turns.append(t)
        if not changed:
            return record
        counters["modified"] += 1
        return {**record, "turns": turns}


def mask_pii(text: str, *, kinds: list[str] | tuple[str, ...] = KINDS) -> tuple[str, Counter[str]]:
    """``text`` with PII replaced by typed placeholders, and how many of each kind were masked."""
    found: Counter[str] = Counter()
    for kind in KINDS:
        if kind not in kinds:
            continue
        placeholder = f"[{kind.upper()}]"
        for pattern in _PATTERNS[kind]:

            def replace(m: re.Match[str], kind: str = kind, placeholder: str = placeholder) -> str:
                matched = m.group(0)
                if kind == "phone" and sum(c.isdigit() for c in matched) < _MIN_PHONE_DIGITS:
                    return matched
                core = matched.rstrip(".,;:!?") if kind == "url" else matched  # "see www.x.com." ends a sentence
                found[kind] += 1
                return placeholder + matched[len(core) :]

            text = pattern.sub(replace, text)
    return text, found
