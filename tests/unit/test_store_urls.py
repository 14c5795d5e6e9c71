"""The persistent stores open at a configured database URL or in the state folder.

The config's ``storage.url`` (added on another branch) will be handed to
``CallbackStore.open`` and ``TransferStore.open``; ``None`` keeps the SQLite file
in the instance's state folder.
"""

from __future__ import annotations

from pathlib import Path

from queues.callback import CallbackRequest
from queues.callback_store import FILENAME as CALLBACKS_FILE
from queues.callback_store import CallbackStore
from transfer.store import FILENAME as TRANSFERS_FILE
from transfer.store import TransferStore


def request() -> CallbackRequest:
    return CallbackRequest(id="cb-1", queue="province", number="13907910001",
                           first_queued=1000.0, uniqueid="1700000000.1")


def test_callback_store_at_a_url_keeps_requests_across_reopening(tmp_path: Path) -> None:
    db = tmp_path / "elsewhere" / "cb.db"
    db.parent.mkdir()
    url = f"sqlite:///{db}"
    store = CallbackStore.open(url, tmp_path / "state")
    store.save(request())
    store.close()
    again = CallbackStore.open(url, tmp_path / "state")
    got = again.get("cb-1")
    again.close()
    assert got is not None and (got.number, got.first_queued) == ("13907910001", 1000.0)
    assert db.exists() and not (tmp_path / "state").exists()


def test_callback_store_without_a_url_is_a_file_in_the_state_folder(tmp_path: Path) -> None:
    store = CallbackStore.open(None, tmp_path)
    store.save(request())
    store.close()
    assert (tmp_path / CALLBACKS_FILE).exists()
    assert [r.id for r in CallbackStore.in_state_dir(tmp_path).open_requests()] == ["cb-1"]


def test_transfer_store_takes_a_url_or_a_path(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    by_url = TransferStore.open(f"sqlite:///{db}", tmp_path / "state")
    assert by_url.open_transfers() == [] and db.exists()
    by_path = TransferStore(tmp_path / "p.sqlite")
    assert by_path.open_transfers() == [] and (tmp_path / "p.sqlite").exists()
    TransferStore.open(None, tmp_path).open_transfers()
    assert (tmp_path / TRANSFERS_FILE).exists()
