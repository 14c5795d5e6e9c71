"""Where a caller is, from the caller ID (屬地管理優先: handle locally first).

The city comes from the number itself: a fixed line's area code against the
``cities:`` table of the config, or a mobile number's segment through the
``phonenumbers`` geocoder (which names the province and city, e.g. 江西省赣州市;
it is matched against the configured city names). The county needs the config:
``cities.X.counties.Y.prefixes`` lists fixed-line exchange prefixes (after the
area code) or mobile segments that belong to that county.

Pure functions; the caller ID is untrusted text and is only compared, never
echoed into the dialplan.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

import phonenumbers
from phonenumbers import geocoder

from dialplan.model import Config
from queues.hours import open_centre


@dataclass(frozen=True)
class Locality:
    city: str | None = None  # id in cfg.cities
    county: str | None = None  # id in cfg.cities[city].counties
    source: str = "unknown"  # area-code, mobile, menu, unknown


def digits_of(caller_id: str) -> str:
    d = re.sub(r"[^0-9+]", "", caller_id or "")[:24]
    for cc in ("+86", "0086"):
        if d.startswith(cc):
            national = d[len(cc):].lstrip("0")  # "+86 0797…" keeps a trunk 0 sometimes
            d = national if national.startswith("1") else "0" + national
            break
    return d.lstrip("+")


def locate(cfg: Config, caller_id: str) -> Locality:
    num = digits_of(caller_id)
    if not num:
        return Locality()
    if num.startswith("0"):
        for cid, city in cfg.cities.items():
            if num.startswith(city.area_code):
                rest = num[len(city.area_code):]
                return Locality(cid, _county(cfg, cid, rest), "area-code")
        return Locality()
    if len(num) == 11 and num.startswith("1"):
        try:
            parsed = phonenumbers.parse(num, "CN")
        except phonenumbers.NumberParseException:
            return Locality()
        where = geocoder.description_for_number(parsed, "zh")
        for cid, city in cfg.cities.items():
            if where.endswith(city.name):
                return Locality(cid, _county(cfg, cid, num), "mobile")
    return Locality()


def _county(cfg: Config, city: str, rest: str) -> str | None:
    best: tuple[int, str] | None = None
    for kid, county in cfg.cities[city].counties.items():
        for p in county.prefixes:
            if rest.startswith(p) and (best is None or len(p) > best[0]):
                best = (len(p), kid)
    return best[1] if best else None


def local_queue(cfg: Config, loc: Locality, now: datetime | None = None) -> str:
    """The first queue to ring for this caller (屬地管理優先).

    The county's remote seats, then the city centre's queue, then the default
    queue; a centre outside its opening hours (or on a holiday) hands its
    callers to the nearest open parent centre, in the end the 24/7 province.
    """
    if loc.city and loc.city in cfg.cities:
        city = cfg.cities[loc.city]
        if city.centre and city.centre in cfg.centres:
            served_by = open_centre(cfg, city.centre, now)
            if served_by == city.centre:
                if loc.county and loc.county in city.counties and city.counties[loc.county].queue:
                    q = city.counties[loc.county].queue
                    assert q is not None
                    return q
                return cfg.centres[city.centre].queue
            return cfg.centres[served_by].queue
    return cfg.hotline.default_queue
