"""Errors of the transfer service, each with its HTTP status and stable ``error_id``."""

from __future__ import annotations

from typing import Any


class TransferError(Exception):
    status = 400
    error_id = "transfer-error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = details


class UnknownLine(TransferError):
    status, error_id = 400, "unknown-line"


class UnknownSeat(TransferError):
    status, error_id = 404, "not-found"


class NotAllowed(TransferError):
    status, error_id = 403, "forbidden"


class NoCall(TransferError):
    status, error_id = 409, "no-call"


class TransferInProgress(TransferError):
    status, error_id = 409, "transfer-in-progress"


class CallMoved(TransferError):
    """Asterisk refused to move the parties (the call ended or moved meanwhile)."""

    status, error_id = 409, "call-moved"


class AsteriskUnavailable(TransferError):
    status, error_id = 503, "asterisk-unavailable"


class BadRequest(TransferError):
    status, error_id = 400, "bad-request"


class NotFound(TransferError):
    status, error_id = 404, "not-found"
