"""hotline.channel_vars.is_seat_channel: a seat's channels, exactly."""

from hotline.channel_vars import is_seat_channel


def test_a_seat_channel_is_matched_exactly() -> None:
    assert is_seat_channel("PJSIP/1001-0000000a", "1001")
    assert is_seat_channel("PJSIP/yudu-01-0000001f", "yudu-01")
    # seat ids may contain "-": seat yudu is not seat yudu-01
    assert not is_seat_channel("PJSIP/yudu-01-0000001f", "yudu")
    assert not is_seat_channel("PJSIP/10011-0000000a", "1001")
    assert not is_seat_channel("Local/1001-0000000a;1", "1001")
    assert not is_seat_channel("PJSIP/1001-0000000a;x", "1001")
    assert not is_seat_channel("PJSIP/a.b-0000000a", "a+b")  # the seat id is not a pattern
