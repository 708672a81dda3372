"""Several REST APIs on one local port: which API a path reaches, and which base paths a runtime accepts."""

from dataclasses import dataclass, field
from typing import Any

import pytest

from carebus_local.api_router import ApiRouter
from carebus_local.api_stack import local_outputs, served_apis
from carebus_local.gateway_responses import REQUEST_TOO_LARGE, GatewayError
from carebus_local.http import Headers, HttpResponse
from carebus_local.stack import OfflineStack


@dataclass
class RecordingApi:
    """Stands in for a LocalRestApi: remembers the paths it was handed."""

    name: str
    paths: list[str] = field(default_factory=list)

    def handle(
        self, method: str, path: str, query_string: str, headers: Headers, body: bytes, source_ip: str
    ) -> HttpResponse:
        self.paths.append(path)
        return HttpResponse(200, [], self.name.encode())

    def refusal(self, error: GatewayError) -> HttpResponse:
        return HttpResponse(error.status, [], self.name.encode())


@pytest.fixture
def apis() -> dict[str, RecordingApi]:
    return {"": RecordingApi("staff"), "partner": RecordingApi("partner")}


@pytest.fixture
def router(apis: dict[str, RecordingApi]) -> ApiRouter:
    return ApiRouter(apis)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("path", "api", "seen_as"),
    [
        ("/v1/encounters", "staff", "/v1/encounters"),
        ("/partner/v1/claims/c-1", "partner", "/v1/claims/c-1"),
        ("/partner", "partner", "/"),  # the partner host's root
        ("/partner/", "partner", "/"),
        ("/partners/v1/claims", "staff", "/partners/v1/claims"),  # no such API: the root API answers
        ("/oauth2/token", "staff", "/oauth2/token"),  # no token endpoint given
    ],
)
def test_each_path_reaches_the_api_its_prefix_names_without_the_prefix(router, apis, path, api, seen_as):
    answer = router.handle("GET", path, "", [], b"", "127.0.0.1")

    assert answer.body == api.encode()
    [reached] = [recording for recording in apis.values() if recording.paths]
    assert (reached.name, reached.paths) == (api, [seen_as])


def test_an_unreadable_request_is_answered_by_the_root_api(router):
    assert router.refusal(REQUEST_TOO_LARGE).body == b"staff"


@pytest.mark.parametrize(
    "apis", [{"partner": RecordingApi("p")}, {"": RecordingApi("s"), "a/b": RecordingApi("p")}]
)
def test_a_router_needs_one_root_api_and_one_segment_base_paths(apis):
    with pytest.raises(ValueError, match=r"root|segment"):
        ApiRouter(apis)  # type: ignore[arg-type]


def stack_with(rest_apis: dict[str, Any], outputs: dict[str, Any]) -> OfflineStack:
    return OfflineStack("s", "us-east-1", {}, outputs, {}, [], [], rest_apis, {"Resources": {}})


STAFF = {"id": "aaaaaaaaaa", "stages": ["v1"], "body": {}}
PARTNER = {"id": "bbbbbbbbbb", "stages": ["v1"], "body": {}}


@pytest.mark.parametrize(
    ("base_paths", "complaint"),
    [
        ({}, "exactly one REST API is served at the root"),
        ({"StaffApi": "staff", "PartnerApi": "staff"}, "exactly one REST API is served at the root"),
        ({"PartnerApi": ""}, "exactly one REST API is served at the root"),
    ],
)
def test_base_paths_must_leave_exactly_one_api_at_the_root(base_paths, complaint):
    stack = stack_with({"StaffApi": STAFF, "PartnerApi": PARTNER}, {})

    with pytest.raises(ValueError, match=complaint):
        served_apis(stack, base_paths)


def test_outputs_naming_an_api_stage_name_its_local_url_instead():
    outputs = {
        "ApiUrl": "https://aaaaaaaaaa.execute-api.us-east-1.amazonaws.com/v1",
        "PartnerApiUrl": "https://bbbbbbbbbb.execute-api.us-east-1.amazonaws.com/v1",
        "Elsewhere": "https://cccccccccc.execute-api.us-east-1.amazonaws.com/v1",
        "Count": 3,
    }
    stack = stack_with({"StaffApi": STAFF, "PartnerApi": PARTNER}, outputs)

    local = local_outputs(stack, "http://127.0.0.1:3000", {"PartnerApi": "partner"})

    assert local == {
        "ApiUrl": "http://127.0.0.1:3000/v1",
        "PartnerApiUrl": "http://127.0.0.1:3000/partner/v1",
        "Elsewhere": outputs["Elsewhere"],
        "Count": 3,
    }


def test_a_base_path_for_an_api_the_template_lacks_is_ignored():
    stack = stack_with({"StaffApi": STAFF}, {})

    [served] = served_apis(stack, {"PartnerApi": "partner"})

    assert (served.logical_id, served.base_path) == ("StaffApi", "")
