"""The panel's catalogues and formats, without a browser (tests/web/test_pages.py checks the
browser's own formats against these)."""

from __future__ import annotations

import string
from datetime import UTC, date, datetime

from kenshin.server.web.i18n import LANGS, catalogue, translator


def _placeholders(message: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(message) if name}


def test_every_language_has_every_message_with_the_same_placeholders():
    ja, en = (catalogue(lang) for lang in LANGS)
    assert ja.keys() == en.keys()
    for key in ja:
        assert _placeholders(ja[key]) == _placeholders(en[key]), key
        assert ja[key].strip() or key == "home.units", key


def test_japanese_formats():
    t = translator("ja")
    at = datetime(2026, 11, 24, 6, 30, tzinfo=UTC)  # 15:30 in Japan
    assert t.datetime(at) == "2026年11月24日 15:30"
    assert t.date(at) == "2026年11月24日"
    assert t.date(datetime(2026, 11, 24, 15, 0, tzinfo=UTC)) == "2026年11月25日"  # JST day
    assert t.kwh(1_234_000) == "1,234.0 kWh"
    assert t.kwh(56) == "0.1 kWh"
    assert t.watts(1234) == "1,234 W"
    assert t.power(1234) == "1,234 W"
    assert t.power(-850) == "売電 850 W"  # sold, never negative watts
    assert t.number(None) == "—"
    assert t.duration(3 * 86400 + 4 * 3600 + 59) == "3日4時間"
    assert t.duration(3600 + 120) == "1時間2分"
    assert t("state.never_seen") == "未通電(設置済み)"


def test_english_formats():
    t = translator("en")
    assert t.datetime(datetime(2026, 1, 4, 23, 5, tzinfo=UTC)) == "5 Jan 2026 08:05"
    assert t.date(date(2026, 11, 24)) == "24 Nov 2026"
    assert t.kwh(1_234_500) == "1,234.5 kWh"
    assert t.duration(90) == "0 h 1 min"
    assert t("home.gateways_total", count=t.number(12_345)) == "12,345 in all"


def test_an_unknown_language_is_japanese_and_an_uncatalogued_code_shows_itself():
    assert translator("fr").lang == "ja"
    assert translator(None).lang == "ja"
    assert translator("en").get("event.something_new", "something_new") == "something_new"
