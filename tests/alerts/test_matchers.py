"""Label matchers' regexes: RE2's, as Prometheus and Alertmanager compile them, anchored at both ends.

Alert rules and routes see label values a sender chose, so a pattern that backtracks in Python's `re`
must not stall the agent; what RE2 refuses is a config error naming the field.
"""

from __future__ import annotations

import pytest
import yaml

from agent import config as config_module
from agent.alerts.matchers import Matcher


def problems(rule: str = 'a="b"', route: str = 'a="b"') -> list[str]:
    """What the config loader (as `vigil validate`) says of a rule's and a route's matcher."""
    text = yaml.safe_dump({
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:0"}}}},
        "processors": {"alerts": {"rules": [{"name": "R", "metric": "m", "threshold": 1, "matchers": [rule]}],
                                  "route": {"routes": [{"matchers": [route]}]}}},
        "exporters": {"debug": {}},
        "service": {"pipelines": {"metrics": {"receivers": ["otlp"], "processors": ["alerts"],
                                              "exporters": ["debug"]}}},
    })
    with pytest.raises(config_module.ConfigError) as refused:
        config_module.parse(text, "<alerts>")
    return refused.value.problems


def test_a_pattern_that_backtracks_in_pythons_re_runs_in_linear_time_on_a_long_label_value():
    # `(a+)+` against a run of `a`s that ends in a mismatch never ends in Python's re; RE2 does not backtrack.
    matcher = Matcher.parse('ml.model.name=~"(a+)+"')
    assert not matcher.matches({"ml.model.name": "a" * 100_000 + "!"})
    assert matcher.matches({"ml.model.name": "a" * 100_000})
    assert Matcher.parse('ml.model.name!~"(a|aa)+"').matches({"ml.model.name": "a" * 100_000 + "b"})


@pytest.mark.parametrize("text, value, expected", [
    ('n=~"fraud|churn"', "fraud", True),
    ('n=~"fraud|churn"', "fraudster", False),  # anchored around the whole alternation: ^(?:fraud|churn)$
    ('n=~"fraud|churn"', "xchurn", False),
    ('n=~"fraud"', "fraud\n", False),  # `$` is the end of the value, not before a trailing newline
    ('n=~".*"', "", True),
    ('n!~".+"', "", True),  # an absent label reads as empty
    ('n=~"(?i)FRAUD"', "fraud", True),  # RE2's flags, as Go's
    ('n=~"\\\\d+"', "42", True),
])
def test_regexes_match_the_whole_value_as_in_prometheus(text, value, expected):
    assert Matcher.parse(text).matches({"n": value} if value else {}) is expected


def test_a_lookahead_is_refused_naming_the_rule_and_the_route_field():
    refused = problems(rule='ml.model.name=~"(?!fraud).*"', route='severity!~"crit(?=ical)"')
    note = "(RE2 syntax, as in Prometheus: no lookaround, backreferences or possessive repeats)"
    assert refused == [
        "processors.alerts.rules[0].matchers: invalid matcher 'ml.model.name=~\"(?!fraud).*\"': invalid regex "
        f"'(?!fraud).*': invalid perl operator: (?! {note}",
        "processors.alerts.route.routes[0].matchers: invalid matcher 'severity!~\"crit(?=ical)\"': invalid regex "
        f"'crit(?=ical)': invalid perl operator: (?= {note}",
    ]


def test_a_backreference_and_a_broken_pattern_are_refused_in_the_words_written():
    backreference = r'a=~"(x)\\1"'  # the matcher text as written in YAML; its regex is (x)\1
    assert problems(rule=backreference) == [
        f"processors.alerts.rules[0].matchers: invalid matcher {backreference!r}: invalid regex '(x)\\\\1': "
        "invalid escape sequence: \\1 (RE2 syntax, as in Prometheus: no lookaround, backreferences or "
        "possessive repeats)"]
    assert problems(route='a=~"(x"') == [
        "processors.alerts.route.routes[0].matchers: invalid matcher 'a=~\"(x\"': invalid regex '(x': missing ): (x"]
