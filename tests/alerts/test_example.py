"""examples/retraining_webhook/: its config validates, and Vigil's webhook notifier drives its receiver."""

from __future__ import annotations

import importlib.util
import logging
import threading
from pathlib import Path

from agent import config as config_module
from agent.alerts.config import AlertsConfig
from agent.alerts.notifiers import create
from agent.alerts.notifiers.base import Delivery, RetryPolicy
from agent.component import Kind, ComponentId
from agent.telemetry import SelfTelemetry
from tests.alerts.test_notifiers import notification
from tests.conftest import async_wait_for

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "retraining_webhook"


def receiver_module():
    spec = importlib.util.spec_from_file_location("retrain_receiver", EXAMPLE / "retrain_receiver.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_the_example_config_validates(monkeypatch):
    monkeypatch.chdir(REPO)  # its rule_files path is relative to the repository's root
    for name, value in {"RETRAIN_TOKEN": "t", "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/x",
                        "PAGERDUTY_ROUTING_KEY": "k"}.items():
        monkeypatch.setenv(name, value)
    loaded = config_module.load(EXAMPLE / "vigil.yaml")
    alerts = loaded.component(Kind.PROCESSOR, ComponentId("alerts")).config
    assert len(alerts.all_rules()) >= 15 and "webhook/retrain" in alerts.notifiers
    assert loaded.warnings == []


async def test_a_drift_notification_starts_one_retraining():
    module = receiver_module()
    launched: list[list[str]] = []
    retrainer = module.Retrainer("python train.py --model {model} --base-version {version}", cooldown=3600,
                                 launch=launched.append)
    server = module.serve(retrainer, "127.0.0.1", 0, token="s3cret")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/retrain"
    telemetry = SelfTelemetry()

    def delivery(token: str) -> Delivery:
        settings = {"url": url, "headers": {"Authorization": f"Bearer {token}"}}
        nconfig = AlertsConfig.model_validate({"notifiers": {"webhook/retrain": settings}}).notifiers["webhook/retrain"]
        notifier = create("webhook/retrain", nconfig, logger=logging.getLogger("t"), host="h", timeout=5)
        return Delivery(notifier, processor="alerts", telemetry=telemetry, log=logging.getLogger("t"), timeout=5,
                        retry=RetryPolicy(0.05, 0.1, 0.5), queue_size=10)

    try:
        good = delivery("s3cret")
        await good.start()
        good.offer(notification("webhook/retrain", firing=("age", "amount")))  # two features, one model version
        good.offer(notification("webhook/retrain", firing=("age", "amount")))  # a repeat
        good.offer(notification("webhook/retrain", firing=(), resolved=("age", "amount")))
        assert await async_wait_for(lambda: good.sent == 3)
        await good.drain(1.0)
        assert launched == [["python", "train.py", "--model", "fraud", "--base-version", "v3"]]

        bad = delivery("wrong")
        await bad.start()
        bad.offer(notification("webhook/retrain"))
        assert await async_wait_for(lambda: bad.failed == 1)
        await bad.drain(1.0)
        assert "HTTP 401" in bad.last_error and len(launched) == 1
    finally:
        server.shutdown()
        server.server_close()
