"""WorkOrderStore on SQLite and on a real PostgreSQL (tests/postgres.py): the same suite."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, func, inspect, select, text
from sqlalchemy.exc import OperationalError

from dialplan.model import TimeLimit
from hotline.auth import Principal
from workorders import lifecycle as lc
from workorders.facts import CallFacts, Category, Outcome
from workorders.schema import Base, CallRow, EventRow, OrderRow
from workorders.store import OrderNotFound, WorkOrderStore

T0 = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)  # 10:00 in Nanchang
POLICY = lc.Policy(
    units={"water": "province", "housing": "nanchang"},
    category_limits={"help": "utilities"},
    remind_before=TimeLimit(seconds=3600),
)
AGENT = Principal("zhang", "agent", seat="1001", centre="province")
SUPERVISOR = Principal("li", "supervisor", centre="province")
WATER = Principal("water-desk", "unit", unit="water")
HOUSING = Principal("housing-desk", "unit", unit="housing")


class Clock:
    def __init__(self) -> None:
        self.now = T0 + timedelta(minutes=10)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'orders.sqlite'}"
        return
    url = request.getfixturevalue("pg_url")
    engine = create_engine(url)
    Base.metadata.drop_all(engine)  # every test starts from empty tables
    engine.dispose()
    yield url


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(db_url: str, clock: Clock) -> Iterator[WorkOrderStore]:
    s = WorkOrderStore(
        db_url,
        policy=POLICY,
        clock=clock,
        centres_under=lambda: {"province": {"province", "nanchang"}},
    )
    yield s
    s.close()


def facts(call_id: str, outcome: Outcome = Outcome.ANSWERED, **kw: object) -> CallFacts:
    base: dict[str, object] = dict(
        call_id=call_id,
        uniqueid=call_id + ".1",
        caller="13800000001",
        called="12345",
        outcome=outcome,
        started_at=T0,
        ended_at=T0 + timedelta(minutes=3),
        centre="province",
        agent="zhang" if outcome == Outcome.ANSWERED else None,
        answered_at=T0 + timedelta(seconds=20) if outcome == Outcome.ANSWERED else None,
        wait_seconds=20.0,
        ivr_path=[{"menu": "main", "key": "1"}],
    )
    base.update(kw)
    return CallFacts(**base)  # type: ignore[arg-type]


def count(store: WorkOrderStore, table: type[Base]) -> int:
    with store.engine.connect() as c:
        return int(c.execute(select(func.count()).select_from(table)).scalar_one())


def test_case_references_are_daily_sequences(store: WorkOrderStore) -> None:
    a = store.record_call(facts("c1"))
    b = store.record_call(facts("c2"))
    c = store.record_call(facts("c3", started_at=T0 + timedelta(days=1)))
    assert (a, b, c) == ("JX20261125000001", "JX20261125000002", "JX20261126000001")
    assert a[2:].isdigit()


def test_record_call_is_idempotent(store: WorkOrderStore) -> None:
    ref = store.record_call(facts("c1"))
    assert store.record_call(facts("c1")) == ref
    assert count(store, OrderRow) == 1 and count(store, CallRow) == 1
    order = store.get(ref)
    assert order["status"] == lc.OPEN and order["agent"] == "zhang"
    assert order["calls"][0]["ivr_path"] == [{"menu": "main", "key": "1"}]
    assert order["created_at"] == T0


def test_two_concurrent_record_calls_ticket_once(db_url: str, clock: Clock) -> None:
    stores = [WorkOrderStore(db_url, policy=POLICY, clock=clock) for _ in range(2)]
    refs: list[str] = []
    errors: list[BaseException] = []
    go = threading.Barrier(2)

    def attempt(s: WorkOrderStore) -> None:
        try:
            go.wait()
            for i in range(10):
                refs.append(s.record_call(facts(f"race-{i}")))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=attempt, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert len(refs) == 20 and len(set(refs)) == 10
    assert sorted(set(refs)) == [f"JX20261125{i:06d}" for i in range(1, 11)]  # no gaps
    assert count(stores[0], OrderRow) == 10 and count(stores[0], CallRow) == 10
    for s in stores:
        s.close()


def test_the_loser_of_a_real_race_returns_the_winners_order(pg_url: str, clock: Clock) -> None:
    """Both transactions look the call up, find nothing, then both insert: the unique
    key on order_calls.call_id makes one fail; it is retried and finds the winner's order.
    (On SQLite the write lock taken at BEGIN IMMEDIATE already orders the two, so the
    race cannot be staged there.)"""
    engine = create_engine(pg_url)
    Base.metadata.drop_all(engine)
    engine.dispose()
    stores = [WorkOrderStore(pg_url, policy=POLICY, clock=clock) for _ in range(2)]
    both_looked = threading.Barrier(2, timeout=10)
    staged_flags: list[list[bool]] = []
    for s in stores:
        real = s._new_orders  # what record_call(s) uses to number and insert new orders
        first = [True]

        def staged(c, orders, real=real, first=first):  # type: ignore[no-untyped-def]
            if first[0]:
                first[0] = False
                both_looked.wait()  # both have seen "no order for this call"
            return real(c, orders)

        s._new_orders = staged  # type: ignore[method-assign]
        staged_flags.append(first)
    refs: list[str] = []
    threads = [
        threading.Thread(target=lambda s=s: refs.append(s.record_call(facts("same"))))
        for s in stores
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert staged_flags == [[False], [False]]  # both went through the staged race
    assert len(refs) == 2 and refs[0] == refs[1] == "JX20261125000001"
    assert sum(s.retries for s in stores) == 1
    assert count(stores[0], OrderRow) == 1 and count(stores[0], CallRow) == 1
    # the loser's sequence number was rolled back with it: no gap
    assert stores[0].record_call(facts("next")) == "JX20261125000002"
    for s in stores:
        s.close()


def test_reserve_and_record_call_racing(db_url: str, clock: Clock) -> None:
    """The call ends (record_call) while its arrival (reserve) is still being written."""
    a, b = (WorkOrderStore(db_url, policy=POLICY, clock=clock) for _ in range(2))
    refs: dict[str, list[str]] = {}
    errors: list[BaseException] = []
    go = threading.Barrier(2)

    def run(fn: object) -> None:
        try:
            go.wait()
            for i in range(10):
                ref = fn(i)  # type: ignore[operator]
                refs.setdefault(f"r-{i}", []).append(ref)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [
        threading.Thread(
            target=run, args=(lambda i: a.reserve(f"r-{i}", "13800000001", "12345", T0),)
        ),
        threading.Thread(target=run, args=(lambda i: b.record_call(facts(f"r-{i}")),)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert all(len(set(v)) == 1 for v in refs.values()) and len(refs) == 10
    assert count(a, OrderRow) == 10 and count(a, CallRow) == 10
    assert {o["status"] for o in a.find(limit=100)} == {lc.OPEN}
    a.close()
    b.close()


def test_agent_sees_the_reference_during_the_call(store: WorkOrderStore) -> None:
    ref = store.reserve("c1", "13800000001", "12345", T0, centre="province")
    assert store.find(AGENT, call_id="c1") == []
    assert store.assign_agent("c1", "zhang") == ref
    assert [o["ref"] for o in store.find(AGENT, call_id="c1")] == [ref]
    assert store.assign_agent("nope", "zhang") is None
    assert store.record_call(facts("c1")) == ref
    assert [e["action"] for e in store.get(ref)["events"]] == ["created", "answered", "call-ended"]


def test_dismiss_a_callback_without_matter(store: WorkOrderStore) -> None:
    ref = store.record_call(facts("c1", Outcome.ABANDONED))
    with pytest.raises(lc.RequestError, match="why there is no matter"):
        store.act(ref, "dismiss", SUPERVISOR)
    o = store.act(ref, "dismiss", SUPERVISOR, {"reason": "回拨后来电人表示已解决"})
    assert o["status"] == lc.VOID and o["events"][-1]["note"] == "回拨后来电人表示已解决"


def test_reserve_then_record_call_fills_the_same_order(store: WorkOrderStore) -> None:
    ref = store.reserve("c1", "13800000001", "12345", T0, origin="12345", centre="province")
    assert store.reserve("c1", "13800000001", "12345", T0) == ref
    assert store.get(ref)["status"] == lc.INTAKE
    assert store.record_call(facts("c1")) == ref
    order = store.get(ref)
    assert order["status"] == lc.OPEN
    assert [c["outcome"] for c in order["calls"]] == ["answered"]
    assert [(e["action"], e["to_status"]) for e in order["events"]] == [
        ("created", "intake"),
        ("call-ended", "open"),
    ]


@pytest.mark.parametrize(
    "outcome, status",
    [
        (Outcome.ABANDONED, lc.CALLBACK),
        (Outcome.FAILED, lc.CALLBACK),
        (Outcome.CALLBACK, lc.CALLBACK),
        (Outcome.IVR_HANGUP, lc.VOID),
        (Outcome.EMERGENCY, lc.CLOSED),
        (Outcome.TRANSFERRED, lc.OPEN),
    ],
)
def test_every_outcome_gets_an_order(store: WorkOrderStore, outcome: Outcome, status: str) -> None:
    ref = store.record_call(facts("c1", outcome))
    order = store.get(ref)
    assert order["status"] == status
    assert order["events"][0]["note"] == lc.INITIAL_NOTE.get(outcome, "")
    assert (order["closed_at"] is not None) == (status == lc.CLOSED)


def test_dispatch_return_redispatch_reply_close(store: WorkOrderStore, clock: Clock) -> None:
    closed: list[str] = []
    store.on_closed(lambda o: closed.append(o["ref"]))
    ref = store.record_call(facts("c1"))
    o = store.act(
        ref, "complete", AGENT, {"content": "停水三天", "category": "help", "unit": "housing"}
    )
    assert o["status"] == lc.DISPATCHED and o["time_limit"] == "utilities"
    assert o["deadline"] == clock.now + timedelta(hours=24)
    with pytest.raises(OrderNotFound):  # another unit does not even see it
        store.act(ref, "accept", WATER)
    o = store.act(ref, "return", HOUSING, {"reason": "供水归水务集团"})
    assert (o["status"], o["unit"], o["returned"]) == (lc.RETURNED, None, 1)
    with pytest.raises(lc.NotAllowed):
        store.act(ref, "dispatch", AGENT, {"unit": "water"})
    clock.now += timedelta(hours=1)
    o = store.act(ref, "dispatch", SUPERVISOR, {"unit": "water", "time_limit": "urgent"})
    assert o["deadline"] == clock.now + timedelta(hours=2) and o["dispatched_at"] < clock.now
    store.act(ref, "accept", WATER)
    with pytest.raises(lc.TransitionError, match="cannot close order .*: it is accepted"):
        store.act(ref, "close", SUPERVISOR)
    o = store.act(ref, "reply", WATER, {"reply": "已恢复供水"})
    assert o["status"] == lc.REPLIED and o["reply"] == "已恢复供水"
    assert closed == []
    o = store.act(ref, "close", SUPERVISOR)
    assert o["status"] == lc.CLOSED and closed == [ref]
    assert [(e["action"], e["actor"], e["unit"]) for e in o["events"]] == [
        ("created", "system", None),
        ("complete", "zhang", "housing"),
        ("return", "housing-desk", "housing"),
        ("dispatch", "li", "water"),
        ("accept", "water-desk", "water"),
        ("reply", "water-desk", "water"),
        ("close", "li", "water"),
    ]
    assert o["events"][2]["note"] == "供水归水务集团"


def test_consultation_closes_on_the_call_others_must_be_dispatched(store: WorkOrderStore) -> None:
    ref = store.record_call(facts("c1"))
    with pytest.raises(lc.TransitionError, match="only a consultation"):
        store.act(ref, "complete", AGENT, {"content": "x", "category": "complaint", "answer": "y"})
    o = store.act(
        ref,
        "complete",
        AGENT,
        {"content": "社保怎么查", "category": "consultation", "answer": "登录赣服通"},
    )
    assert o["status"] == lc.CLOSED and o["answer"] == "登录赣服通"


def test_reopen_by_supervisor_and_by_a_dissatisfied_survey(
    store: WorkOrderStore, clock: Clock
) -> None:
    ref = store.record_call(facts("c1"))
    store.act(
        ref, "complete", AGENT, {"content": "噪音", "category": "complaint", "unit": "housing"}
    )
    store.act(ref, "reply", HOUSING, {"reply": "已处理"})
    store.act(ref, "close", SUPERVISOR)
    o = store.act(ref, "reopen", SUPERVISOR, {"reason": "未实际处理"})
    assert (o["status"], o["unit"], o["rehandled"], o["closed_at"]) == (
        lc.DISPATCHED,
        "housing",
        1,
        None,
    )
    assert o["deadline"] == clock.now + timedelta(days=7)
    store.act(ref, "reply", HOUSING, {"reply": "再次处理"})
    store.act(ref, "close", SUPERVISOR)
    o = store.record_survey(ref, "dissatisfied", clock.now)
    assert (o["status"], o["rehandled"], o["survey"]) == (lc.DISPATCHED, 2, "dissatisfied")
    assert o["events"][-1]["actor"] == "survey"
    with pytest.raises(lc.RequestError):
        store.record_survey(ref, "meh", clock.now)


def test_satisfied_survey_keeps_it_closed(store: WorkOrderStore) -> None:
    ref = store.record_call(facts("c1"))
    store.act(ref, "complete", AGENT, {"content": "q", "category": "consultation", "answer": "a"})
    o = store.record_survey(ref, "satisfied", T0 + timedelta(hours=1))
    assert o["status"] == lc.CLOSED and o["survey"] == "satisfied"


def test_merge_keeps_every_call(store: WorkOrderStore) -> None:
    keep = store.record_call(facts("c1"))
    dup = store.record_call(facts("c2", Outcome.ABANDONED))
    dup2 = store.record_call(facts("c3"))
    store.act(dup, "merge", SUPERVISOR, {"into": keep})
    o = store.act(dup2, "merge", SUPERVISOR, {"into": keep})
    assert o["status"] == lc.MERGED and o["merged_into_ref"] == keep and o["calls"] == []
    kept = store.get(keep)
    assert sorted(c["call_id"] for c in kept["calls"]) == ["c1", "c2", "c3"]
    assert [e["action"] for e in kept["events"]].count("merged-in") == 2
    with pytest.raises(lc.TransitionError):
        store.act(keep, "merge", SUPERVISOR, {"into": dup})
    # a late record_call of a merged call still answers with the order it now belongs to
    assert store.record_call(facts("c2", Outcome.ABANDONED)) == keep
    assert count(store, CallRow) == 3


def test_agent_acts_only_on_orders_they_handled(store: WorkOrderStore) -> None:
    ref = store.record_call(facts("c1", agent="wang"))
    with pytest.raises(OrderNotFound):
        store.act(
            ref, "complete", AGENT, {"content": "x", "category": "consultation", "answer": "y"}
        )
    assert [o["ref"] for o in store.find(AGENT)] == []
    assert [o["ref"] for o in store.find(SUPERVISOR)] == [ref]


def test_supervision_reminds_and_escalates_once(store: WorkOrderStore, clock: Clock) -> None:
    ref = store.record_call(facts("c1"))
    store.act(
        ref,
        "complete",
        AGENT,
        {"content": "x", "category": "help", "unit": "water", "time_limit": "urgent"},
    )
    start = clock.now
    assert store.supervise(start + timedelta(minutes=59)) == []
    done = store.supervise(start + timedelta(minutes=61))
    assert [(d.ref, d.action, d.unit) for d in done] == [(ref, "reminded", "water")]
    assert store.supervise(start + timedelta(minutes=62)) == []
    done = store.supervise(start + timedelta(hours=2, seconds=1))
    assert [(d.ref, d.action) for d in done] == [(ref, "escalated")]
    assert store.supervise(start + timedelta(hours=3)) == []
    with store.engine.connect() as c:
        actions = c.execute(select(EventRow.action).order_by(EventRow.id)).scalars().all()
    assert actions[-2:] == ["reminded", "escalated"]
    # a re-dispatch gives a new deadline and new reminders
    store.act(ref, "return", WATER, {"reason": "not ours"})
    store.act(ref, "dispatch", SUPERVISOR, {"unit": "water", "time_limit": "urgent"})
    assert [d.action for d in store.supervise(clock.now + timedelta(minutes=90))] == ["reminded"]


def test_in_state_dir(tmp_path) -> None:  # type: ignore[no-untyped-def]
    s = WorkOrderStore.in_state_dir(tmp_path / "state")
    assert s.record_call(facts("c1")).startswith("JX2026112500000")
    assert (tmp_path / "state" / "workorders.sqlite").exists()
    s.close()


def test_category_enum_values_are_the_stored_ones() -> None:
    assert {c.value for c in Category} == {
        "consultation",
        "help",
        "complaint",
        "opinion",
        "suggestion",
    }


def test_supervisor_sees_orders_dispatched_to_units_of_their_centre(store: WorkOrderStore) -> None:
    nanchang = Principal("sup-nc", "supervisor", centre="nanchang")
    ref = store.record_call(facts("c1"))  # a call to the province centre
    other = store.record_call(facts("c2"))
    assert store.find(nanchang) == []
    store.act(ref, "complete", AGENT, {"content": "x", "category": "help", "unit": "housing"})
    store.act(other, "complete", AGENT, {"content": "y", "category": "help", "unit": "water"})
    assert [o["ref"] for o in store.find(nanchang)] == [ref]  # housing is Nanchang's unit
    assert [o["ref"] for o in store.find(SUPERVISOR)] == [other, ref]
    with pytest.raises(OrderNotFound):
        store.get(other, nanchang)


def test_a_database_down_at_start_does_not_stop_the_store(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.postgres import free_port

    # nothing listens on this port: the store starts anyway, and fails loudly on use
    s = WorkOrderStore(f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none?connect_timeout=2")
    with pytest.raises(OperationalError):
        s.record_call(facts("c1"))
    s.close()


def test_a_carrier_caller_id_longer_than_the_column_is_still_ticketed(
    store: WorkOrderStore,
) -> None:
    """Caller IDs come from outside: PostgreSQL would refuse one longer than the column
    and the call would never get its order."""
    long = "1" * 200
    ref = store.reserve("long-1", long, "9" * 50, T0)
    assert store.record_call(facts("long-1", caller=long, called="9" * 50)) == ref
    order = store.get(ref)
    assert order["caller"] == long[:64] and order["calls"][0]["called"] == "9" * 32


def test_a_batch_of_calls_is_one_transaction_with_the_same_results(store: WorkOrderStore) -> None:
    """record_calls: reserved calls filled in, new ones numbered per day, recorded ones kept."""
    reserved = store.reserve("r1", "13800000009", "12333", T0, origin="12333",
                             department="social", centre="nanchang")
    done = store.record_call(facts("d1"))
    next_day = T0 + timedelta(days=1)
    batch = [
        facts("n1"),
        facts("r1", department=None, centre=None, ivr_path=[{"menu": "legacy"}]),
        facts("d1", Outcome.ABANDONED),  # recorded before: left as it was
        facts("n2", started_at=next_day, ended_at=next_day + timedelta(minutes=1)),
        facts("n3", Outcome.EMERGENCY),
    ]
    refs = store.record_calls(batch)
    assert refs == [
        "JX20261125000003", reserved, done, "JX20261126000001", "JX20261125000004"
    ]
    assert store.record_calls(batch) == refs  # idempotent
    filled = store.get(reserved)
    # What the call did not learn (department, centre) keeps the reservation's value.
    assert (filled["department"], filled["centre"], filled["status"]) == (
        "social", "nanchang", lc.OPEN)
    assert filled["calls"][0]["ivr_path"] == [{"menu": "legacy"}]
    assert [e["action"] for e in filled["events"]] == ["created", "call-ended"]
    assert store.get(done)["calls"][0]["outcome"] == "answered"
    emergency = store.get(refs[4])
    assert emergency["status"] == lc.CLOSED and emergency["closed_at"] is not None
    assert count(store, OrderRow) == 5 and count(store, CallRow) == 5
    assert store.record_calls([]) == []


def test_caller_history_for_the_agent_on_the_call(store: WorkOrderStore, clock: Clock) -> None:
    """The caller's earlier orders, newest first, without the call's own order, the
    void ones (nothing stated) and the duplicates merged away."""
    caller = "13800000009"
    refs = []
    for i in range(7):
        clock.now = T0 + timedelta(days=i)
        refs.append(store.record_call(facts(f"h{i}", caller=caller,
                                            started_at=T0 + timedelta(days=i))))
    store.act(refs[6], "complete", AGENT,
              {"content": "停水" * 150, "category": "help", "unit": "water"})
    void = store.record_call(facts("hv", Outcome.IVR_HANGUP, caller=caller,
                                   started_at=T0 + timedelta(days=8)))
    store.act(refs[5], "merge", SUPERVISOR, {"into": refs[6]})
    other = store.record_call(facts("ho", caller="13800000010"))
    now = store.reserve("h-now", caller, "12345", T0 + timedelta(days=9), centre="province")

    seen = store.caller_history(caller, exclude=now)
    assert [o["ref"] for o in seen] == [refs[6], refs[4], refs[3], refs[2], refs[1]]
    assert void not in [o["ref"] for o in seen] and other not in [o["ref"] for o in seen]
    first = seen[0]
    assert first["status"] == lc.DISPATCHED and first["unit"] == "water"
    assert first["category"] == "help" and first["deadline"] is not None
    assert len(first["content"]) == 200 and first["content"].endswith("…")
    assert set(first) == {"ref", "created_at", "status", "category", "content", "unit",
                          "deadline", "closed_at", "survey", "urged"}
    # orders of calls still in progress (intake) are not history, this call's or
    # another's: joining one would take it from the agent on that call
    store.reserve("h-other", caller, "12345", T0 + timedelta(days=9), centre="province")
    assert [o["ref"] for o in store.caller_history(caller, limit=2)] == [refs[6], refs[4]]
    # a withheld number has no history, though the calls it made have orders: all
    # anonymous callers are not one citizen, nor are carriers' all-zero placeholders
    for i, withheld in enumerate(("", "anonymous", "Unknown", "+", "0", "00000000", "110")):
        assert store.record_call(facts(f"w{i}", caller=withheld))
        assert store.caller_history(withheld) == []


def test_an_older_database_gets_the_caller_index_and_the_urged_column(
    db_url: str, clock: Clock
) -> None:
    engine = create_engine(db_url)
    table = OrderRow.__table__
    index = next(i for i in table.indexes if i.name == "ix_orders_caller")  # type: ignore[attr-defined]
    Base.metadata.create_all(engine)
    index.drop(engine)  # what a release before the caller history made
    urged_index = next(i for i in table.indexes if i.name == "ix_orders_urged")  # type: ignore[attr-defined]
    urged_index.drop(engine)
    with engine.begin() as c:
        for column in ("urged", "urged_at", "urge_sent_at"):
            c.execute(text(f"ALTER TABLE work_orders DROP COLUMN {column}"))
    assert "ix_orders_caller" not in {i["name"] for i in inspect(engine).get_indexes("work_orders")}
    s = WorkOrderStore(db_url, policy=POLICY, clock=clock)
    try:
        ref = s.record_call(facts("c1"))  # the first use adds what is missing
        names = {i["name"] for i in inspect(engine).get_indexes("work_orders")}
        assert {"ix_orders_caller", "ix_orders_urged", "ix_orders_created"} <= names
        columns = {col["name"] for col in inspect(engine).get_columns("work_orders")}
        assert {"urged", "urged_at", "urge_sent_at"} <= columns
        assert s.get(ref)["urged"] is None
    finally:
        s.close()
        engine.dispose()


def test_a_repeat_call_joins_the_earlier_order_and_urges_its_unit(
    store: WorkOrderStore, clock: Clock
) -> None:
    caller = "13800000021"
    earlier = store.record_call(facts("r1", caller=caller))
    store.act(earlier, "complete", AGENT, {"content": "停水三天", "category": "help",
                                           "unit": "water"})
    # the same caller calls again; the agent who answers sees the earlier order
    now = store.reserve("r2", caller, "12345", T0 + timedelta(days=1), centre="province")
    store.assign_agent("r2", "zhang")
    assert [o["ref"] for o in store.caller_history(caller, exclude=now)] == [earlier]
    with pytest.raises(OrderNotFound):  # another agent may not act on this call's order
        store.act(now, "repeat", Principal("li", "agent", seat="1002"), {"of": earlier})
    with pytest.raises(OrderNotFound):
        store.act(now, "repeat", AGENT, {"of": "JX20260101999999"})
    # an agent may join only what their screen lists: another caller's order, or any
    # order that exists but was not shown, is "not found" like one that does not exist
    other = store.record_call(facts("r9", caller="13800000099"))
    with pytest.raises(OrderNotFound):
        store.act(now, "repeat", AGENT, {"of": other})
    with pytest.raises(lc.RequestError, match="is not an order of this call's caller"):
        store.act(now, "repeat", SUPERVISOR, {"of": other})  # they may see it: told why

    joined = store.act(now, "repeat", AGENT, {"of": earlier})
    assert joined["status"] == lc.MERGED and joined["merged_into_ref"] == earlier
    kept = store.get(earlier)
    assert kept["status"] == lc.DISPATCHED and kept["urged"] == 1
    assert (kept["events"][-1]["action"], kept["events"][-1]["note"]) == (
        "urged", f"{now}: the caller called again")
    # the next supervision round sends it, once (the mark is in the database: a restart
    # or a second controller sends it no more)
    def urges(s: WorkOrderStore) -> list[lc.Due]:
        return [d for d in s.supervise() if d.action == "urged"]

    [notice] = urges(store)
    assert (notice.ref, notice.action, notice.unit, notice.deadline) == (
        earlier, "urged", "water", kept["deadline"])
    assert urges(store) == []
    again = WorkOrderStore(store.url, policy=POLICY, clock=clock)
    try:
        assert urges(again) == []
    finally:
        again.close()
    # the call ends: its facts land on the order it joined
    assert store.record_call(facts("r2", caller=caller)) == earlier
    assert sorted(c["call_id"] for c in store.get(earlier)["calls"]) == ["r1", "r2"]

    # about an order already closed: it joins, nobody is urged
    store.act(earlier, "reply", WATER, {"reply": "已恢复供水"})
    store.act(earlier, "close", SUPERVISOR)
    third = store.reserve("r3", caller, "12345", T0 + timedelta(days=2), centre="province")
    store.assign_agent("r3", "zhang")
    store.act(third, "repeat", AGENT, {"of": earlier})
    kept = store.get(earlier)
    assert kept["events"][-1]["action"] == "repeat-call" and kept["urged"] == 1
    assert urges(store) == []


def test_repeat_never_takes_another_call_s_order_or_one_not_shown(
    store: WorkOrderStore, clock: Clock
) -> None:
    caller = "13800000055"
    li = Principal("li", "agent", seat="1002", centre="province")
    # li is on the caller's first call (B, still in intake); the caller calls again
    b = store.reserve("b1", caller, "12345", T0, centre="province")
    store.assign_agent("b1", "li")
    a = store.reserve("a1", caller, "12345", T0 + timedelta(minutes=1), centre="province")
    store.assign_agent("a1", "zhang")
    with pytest.raises(OrderNotFound):
        store.act(a, "repeat", AGENT, {"of": b})
    with pytest.raises(lc.TransitionError, match="it is intake"):
        store.act(a, "repeat", SUPERVISOR, {"of": b})
    # both calls end: each order keeps its own call and agent
    store.record_call(facts("a1", caller=caller, agent="zhang"))
    store.record_call(facts("b1", caller=caller, agent="li"))
    assert store.get(b)["agent"] == "li" and store.get(a)["agent"] == "zhang"
    assert store.find(li, call_id="b1")[0]["ref"] == b
    # six earlier orders: the screen lists five, the oldest cannot be joined by an agent
    older = []
    for i in range(6):
        clock.now = T0 + timedelta(days=1 + i)
        older.append(store.record_call(facts(f"o{i}", caller=caller,
                                             started_at=T0 + timedelta(days=1 + i))))
    now = store.reserve("c1", caller, "12345", T0 + timedelta(days=9), centre="province")
    store.assign_agent("c1", "zhang")
    shown = [o["ref"] for o in store.caller_history(caller, exclude=now)]
    assert len(shown) == 5 and older[-1] in shown and a not in shown
    with pytest.raises(OrderNotFound):
        store.act(now, "repeat", AGENT, {"of": a})
    assert store.act(now, "repeat", AGENT, {"of": older[-1]})["merged_into_ref"] == older[-1]
