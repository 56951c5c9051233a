"""The half pairs waiting: bounded by count, bytes and age, on a clock the test moves."""

from __future__ import annotations

from collections import Counter

from agent.receivers.kserve.events import LoggedEvent
from agent.receivers.kserve.pairing import Pairs


def event(ce_id: str, is_request: bool, size: int = 10, component: str = "predictor") -> LoggedEvent:
    return LoggedEvent(id=ce_id, is_request=is_request, source="s", time_ns=None, service="iris",
                       namespace="ns", component=component, endpoint="", data=b"x" * size)


def pairs(**limits):
    now, dropped = [0.0], Counter()
    made = Pairs(limits.get("max_pending", 100), limits.get("max_bytes", 1000), limits.get("ttl", 30.0),
                 lambda reason, n: dropped.update({reason: n}), clock=lambda: now[0])
    return made, now, dropped


def test_a_pair_comes_out_request_first_whichever_arrived_first():
    waiting, _, _ = pairs()
    response, request = event("1", False), event("1", True)
    assert waiting.add(response) is None
    assert waiting.add(request) == (request, response)
    assert len(waiting) == 0 and waiting.bytes == 0


def test_the_same_id_from_another_component_is_another_pair():
    waiting, _, _ = pairs()
    waiting.add(event("1", True, component="transformer"))
    assert waiting.add(event("1", False, component="predictor")) is None
    assert len(waiting) == 2


def test_a_half_pair_expires_after_the_timeout_and_not_before():
    waiting, now, dropped = pairs(ttl=30.0)
    waiting.add(event("1", True))
    now[0] = 30.0
    assert waiting.expire() == 0
    now[0] = 30.5
    assert waiting.expire() == 1 and dropped == {"expired": 1} and waiting.bytes == 0


def test_the_byte_bound_drops_the_oldest_and_a_body_alone_over_it_is_not_held():
    waiting, _, dropped = pairs(max_bytes=25)
    waiting.add(event("1", True, size=10))
    waiting.add(event("2", True, size=10))
    waiting.add(event("3", True, size=10))
    assert len(waiting) == 2 and waiting.bytes == 20 and dropped == {"evicted": 1}
    assert waiting.add(event("4", True, size=26)) is None
    assert dropped == {"evicted": 1, "too_large": 1} and waiting.bytes == 20


def test_a_completed_pair_s_ids_are_remembered_for_the_timeout_then_forgotten():
    waiting, now, _ = pairs(ttl=10.0)
    waiting.add(event("1", True))
    waiting.add(event("1", False))
    assert waiting.add(event("1", False)) == "duplicate"
    now[0] = 11.0
    assert waiting.add(event("1", False)) is None  # long after: a new half pair


def test_put_back_lets_a_resent_partner_pair_again():
    waiting, _, _ = pairs()
    request, response = event("1", True), event("1", False)
    waiting.add(request)
    waiting.add(response)
    waiting.put_back(request, response, keep=request)
    assert waiting.add(response) == (request, response)
