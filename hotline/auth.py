"""Users of the HTTP API: password hashes, and who may act on what (pure).

Passwords are stored in the YAML only as PBKDF2-SHA256 hashes in the form
``pbkdf2_sha256$ITERATIONS$SALT_B64$HASH_B64`` (``hotline passwd`` makes one),
so the admin's file never holds a password. Verification is constant-time.

Roles:

* ``agent``: acts on their own seat only (log in and out, pause, resume);
* ``supervisor``: on the queues and seats of their centre (and its counties),
  and may listen to, whisper to or join calls there;
* ``unit``: a responsible unit (承办单位): only the work orders dispatched to
  its unit (accept, reply, return);
* ``admin``: everything.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass

ALGORITHM = "pbkdf2_sha256"
ITERATIONS = 200_000


class AuthError(Exception):
    """Who you are is unknown (401)."""


class Forbidden(Exception):
    """Known, but not allowed to do this (403)."""


def hash_password(password: str, iterations: int = ITERATIONS, salt: bytes | None = None) -> str:
    salt = salt or os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    b64 = base64.b64encode
    return f"{ALGORITHM}${iterations}${b64(salt).decode()}${b64(digest).decode()}"


def check_hash_format(stored: str) -> None:
    parts = stored.split("$")
    if len(parts) != 4 or parts[0] != ALGORITHM or not parts[1].isdigit():
        raise ValueError("expected pbkdf2_sha256$ITERATIONS$SALT$HASH (make one with `hotline passwd`)")
    base64.b64decode(parts[2], validate=True)
    base64.b64decode(parts[3], validate=True)


def verify_password(password: str, stored: str) -> bool:
    try:
        algo, iters, salt, digest = stored.split("$")
        if algo != ALGORITHM:
            return False
        expected = base64.b64decode(digest)
        got = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iters))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


@dataclass(frozen=True)
class Principal:
    """An authenticated user of the API."""

    name: str
    role: str  # agent, supervisor, admin
    seat: str | None = None  # an agent's seat
    centre: str | None = None  # a supervisor's centre
    unit: str | None = None  # a unit user's unit (work orders)


def may_act_on_seat(who: Principal, seat: str, seat_centre: str, centres_under: dict[str, set[str]]) -> bool:
    """``centres_under[c]`` is c and every centre below it."""
    if who.role == "admin":
        return True
    if who.role == "agent":
        return who.seat == seat
    if who.role == "supervisor" and who.centre is not None:
        return seat_centre in centres_under.get(who.centre, {who.centre})
    return False


def may_act_on_queue(who: Principal, queue_centre: str, centres_under: dict[str, set[str]]) -> bool:
    if who.role == "admin":
        return True
    if who.role == "supervisor" and who.centre is not None:
        return queue_centre in centres_under.get(who.centre, {who.centre})
    return False


@dataclass(frozen=True)
class CentreScope:
    """The centres whose calls, orders, recordings and surveys a user may see."""

    centres: frozenset[str] | None  # None: every centre
    unplaced: bool  # also what is not placed in any centre (yet)

    def sees(self, centre: str | None) -> bool:
        if centre is None:
            return self.unplaced
        return self.centres is None or centre in self.centres


def centre_scope(who: Principal, centres_under: Mapping[str, set[str]]) -> CentreScope:
    """Admins see every centre; a supervisor their centre and the centres below it, and
    what is not placed in a centre only when over every centre (fail closed); other
    roles nothing by centre (their own rights are by seat or unit).
    ``centres_under[c]`` is c and every centre below it (:func:`queues.agents.centres_under`)."""
    if who.role == "admin":
        return CentreScope(None, True)
    if who.role == "supervisor" and who.centre is not None:
        mine = frozenset(centres_under.get(who.centre, {who.centre}))
        return CentreScope(mine, mine >= set(centres_under))
    return CentreScope(frozenset(), False)


def require(ok: bool, what: str) -> None:
    if not ok:
        raise Forbidden(what)
