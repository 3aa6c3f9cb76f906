"""The panel's two languages: one message catalogue per language and the number and date
formats that go with it. A language's catalogue is ``locales/<lang>.json`` merged with each
page area's ``locales/<area>.<lang>.json`` (the same keys in each language; a key defined
twice is an error, so areas cannot overwrite each other's words).

Japanese is the default. Times are shown in JST, the clock of the meters and of the people
reading the panel, whatever the server's own zone: ``2026年11月24日 15:30`` in Japanese,
``24 Nov 2026 15:30`` in English; numbers with thousands separators in both (1,234 kWh).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import date, datetime
from importlib import resources
from typing import Any, Literal, get_args

from kenshin.jst import JST, SLOT

__all__ = ["DEFAULT_LANG", "LANGS", "Lang", "Translator", "catalogue", "translator"]

Lang = Literal["ja", "en"]
LANGS: tuple[str, ...] = get_args(Lang)
DEFAULT_LANG: Lang = "ja"
# Not strftime's %b, which follows the process's locale.
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@functools.cache
def catalogue(lang: str) -> dict[str, str]:
    if lang not in LANGS:
        raise ValueError(f"no catalogue for language {lang!r}; have {', '.join(LANGS)}")
    folder = resources.files(__package__).joinpath("locales")
    merged: dict[str, str] = {}
    for name in sorted(f.name for f in folder.iterdir()):
        if name != f"{lang}.json" and not name.endswith(f".{lang}.json"):
            continue
        part = json.loads(folder.joinpath(name).read_text("utf-8"))
        if clash := merged.keys() & part.keys():
            raise ValueError(f"locales/{name} defines again: {', '.join(sorted(clash))}")
        merged |= part
    return merged


@dataclass(frozen=True)
class Translator:
    """Messages and formats of one language; templates call it as ``t("key")``."""

    lang: Lang

    def __call__(self, key: str, **values: Any) -> str:
        # A missing key is a bug in a template, not something to show a user: KeyError.
        message = catalogue(self.lang)[key]
        return message.format(**values) if values else message

    def get(self, key: str, default: str) -> str:
        """For keys made from data (an event code): the data itself when not catalogued."""
        return catalogue(self.lang).get(key, default)

    def messages(self, prefix: str) -> dict[str, str]:
        """The catalogue's messages under `prefix`, for the page's own JavaScript."""
        return {k: v for k, v in catalogue(self.lang).items() if k.startswith(prefix)}

    @property
    def other(self) -> Lang:
        return "en" if self.lang == "ja" else "ja"

    # -- formats ------------------------------------------------------------------------

    def number(self, value: int | float | None, digits: int = 0) -> str:
        if value is None:
            return self("common.none")
        return f"{value:,.{digits}f}"

    def kwh(self, wh: int | None) -> str:
        """Integer Wh as kWh with one decimal: ``1,234.5 kWh``."""
        return self("common.none") if wh is None else f"{self.number(wh / 1000, 1)} kWh"

    def watts(self, w: int | None) -> str:
        return self("common.none") if w is None else f"{self.number(w)} W"

    def power(self, w: int | None) -> str:
        """Power as the panel says it on every page: bought as plain watts, sold as
        ``売電 850 W`` / ``selling 850 W``, never as negative watts."""
        if w is not None and w < 0:
            return self("list.selling", watts=self.watts(-w))
        return self.watts(w)

    def kw(self, w: int | None) -> str:
        """A 30-minute demand (Wh × 2, whole W) in kW: three decimals keep it exact."""
        return self("common.none") if w is None else f"{self.number(w / 1000, 3)} kW"

    def date(self, value: date | datetime | None) -> str:
        if value is None:
            return self("common.none")
        if isinstance(value, datetime):
            value = value.astimezone(JST).date()
        if self.lang == "ja":
            return f"{value.year}年{value.month}月{value.day}日"
        return f"{value.day} {_MONTHS[value.month - 1]} {value.year}"

    def datetime(self, value: datetime | None) -> str:
        """An instant as JST wall-clock time to the minute."""
        if value is None:
            return self("common.none")
        local = value.astimezone(JST)
        return f"{self.date(local.date())} {local:%H:%M}"

    def slot(self, start: datetime | None) -> str:
        """A 30-minute slot by its start, as the panel writes it: ``2026年11月24日 15:30–16:00``."""
        if start is None:
            return self("common.none")
        return self.span(start, start + SLOT)

    def span(self, start: datetime, end: datetime) -> str:
        """A time span within a day (its end may be the next midnight), as a slot is
        written: ``2026年11月24日 15:30–17:00``."""
        return f"{self.datetime(start)}–{end.astimezone(JST):%H:%M}"

    def duration(self, seconds: int | None) -> str:
        if seconds is None:
            return self("common.none")
        minutes = seconds // 60
        days, hours = divmod(minutes // 60, 24)
        if days:
            return self("unit.days_hours", days=self.number(days), hours=hours)
        return self("unit.hours_minutes", hours=hours, minutes=minutes % 60)


def translator(lang: str | None) -> Translator:
    """The translator for `lang`, or for the default language when `lang` is not one."""
    return Translator(lang if lang in LANGS else DEFAULT_LANG)  # type: ignore[arg-type]
