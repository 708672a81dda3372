"""Execution environments offline: concurrent invocations in one process see only their own state, as
each would in its own process on Lambda."""

import json
import threading
from concurrent.futures import ThreadPoolExecutor

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.metrics import Metrics, MetricUnit

from carebus_testing import load_event


def request_to(path: str) -> dict:
    event = load_event("encounter_query/read_encounter.json")
    event["path"] = event["requestContext"]["path"] = path
    event["resource"] = "/{proxy+}"
    return event


def test_concurrent_requests_to_different_resolvers_each_read_their_own_event():
    both_resolving = threading.Barrier(2, timeout=10)
    apps = [APIGatewayRestResolver(), APIGatewayRestResolver()]
    for app in apps:

        @app.get("/<anything>")
        def seen(anything: str, app=app) -> dict:
            both_resolving.wait()  # the other request has published its event by now
            return {"path": app.current_event.path}

    requests = [request_to("/one"), request_to("/two")]
    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(pool.map(lambda app, event: app.resolve(event, {}), apps, requests))

    assert [json.loads(answer["body"])["path"] for answer in answers] == ["/one", "/two"]


def test_concurrent_invocations_keep_their_own_metrics():
    both_added = threading.Barrier(2, timeout=10)

    def add_and_read(name: str) -> list[str]:
        metrics = Metrics(namespace="carebus-test", service="test")
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
        both_added.wait()
        names = sorted(metrics.metric_set)
        metrics.clear_metrics()
        return names

    with ThreadPoolExecutor(max_workers=2) as pool:
        seen = list(pool.map(add_and_read, ["First", "Second"]))

    assert seen == [["First"], ["Second"]]
