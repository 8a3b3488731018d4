"""The official Python SDK (msgraph-sdk with azure-identity), unmodified, against presenced.

The Rust test `sdk::python_sdk_suite` starts presenced over HTTPS with its development CA and runs
this file with pytest; the environment tells where presenced is and who may call it:

PRESENCED_URL (https://127.0.0.1:PORT), REQUESTS_CA_BUNDLE / SSL_CERT_FILE (the development CA),
PRESENCED_TENANT, PRESENCED_APP, PRESENCED_APP_SECRET, PRESENCED_READER_APP, PRESENCED_READER_SECRET,
PRESENCED_THROTTLED_TENANT, PRESENCED_THROTTLED_APP, PRESENCED_THROTTLED_SECRET,
PRESENCED_USER, PRESENCED_USER_NAME, PRESENCED_USER_PASSWORD, PRESENCED_OTHER_USER, PRESENCED_NOBODY.

Only two settings differ from an app that talks to Microsoft Graph: the authority host of the
credential, and the Graph base URL (with its host allowed for the token).
"""

import asyncio
import datetime
import os
import ssl
import time
from urllib.parse import urlparse

import httpx
from azure.core.credentials import AccessToken
from azure.identity import ClientSecretCredential
from kiota_authentication_azure.azure_identity_authentication_provider import (
    AzureIdentityAuthenticationProvider,
)
from kiota_http.middleware.options import RetryHandlerOption
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.graph_request_adapter import options as sdk_middleware_options
from msgraph.generated.communications.get_presences_by_user_id.get_presences_by_user_id_post_request_body import (
    GetPresencesByUserIdPostRequestBody,
)
from msgraph.generated.models.body_type import BodyType
from msgraph.generated.models.date_time_time_zone import DateTimeTimeZone
from msgraph.generated.models.item_body import ItemBody
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.presence_status_message import PresenceStatusMessage
from msgraph.generated.models.work_location_type import WorkLocationType
from msgraph.generated.users.item.presence.presence_request_builder import PresenceRequestBuilder
from msgraph.generated.users.item.presence.set_automatic_location.set_automatic_location_post_request_body import (
    SetAutomaticLocationPostRequestBody,
)
from msgraph.generated.users.item.presence.set_manual_location.set_manual_location_post_request_body import (
    SetManualLocationPostRequestBody,
)
from msgraph.generated.users.item.presence.set_presence.set_presence_post_request_body import (
    SetPresencePostRequestBody,
)
from msgraph.generated.users.item.presence.set_status_message.set_status_message_post_request_body import (
    SetStatusMessagePostRequestBody,
)
from msgraph.generated.users.item.presence.set_user_preferred_presence.set_user_preferred_presence_post_request_body import (
    SetUserPreferredPresencePostRequestBody,
)
from msgraph.generated.users.item.presence.clear_presence.clear_presence_post_request_body import (
    ClearPresencePostRequestBody,
)
from msgraph_core import GraphClientFactory
from kiota_abstractions.base_request_configuration import RequestConfiguration

URL = os.environ["PRESENCED_URL"]
HOST = urlparse(URL).hostname
CA = os.environ["REQUESTS_CA_BUNDLE"]
SCOPES = ["https://graph.microsoft.com/.default"]
TENANT = os.environ["PRESENCED_TENANT"]
APP = os.environ["PRESENCED_APP"]
USER = os.environ["PRESENCED_USER"]
OTHER_USER = os.environ["PRESENCED_OTHER_USER"]
NOBODY = os.environ["PRESENCED_NOBODY"]


def graph(credential, scopes=SCOPES):
    """A GraphServiceClient whose only differences from production are the two settings."""
    auth = AzureIdentityAuthenticationProvider(credential, scopes=scopes, allowed_hosts=[HOST])
    context = ssl.create_default_context(cafile=CA)
    # The SDK's own middleware options (its `/me` URL rewrite, telemetry), on an HTTP/2 client
    # that trusts presenced's development CA.
    http = GraphClientFactory.create_with_default_middleware(
        client=httpx.AsyncClient(http2=True, verify=context), options=sdk_middleware_options
    )
    adapter = GraphRequestAdapter(auth, client=http)
    adapter.base_url = f"{URL}/v1.0"
    return GraphServiceClient(request_adapter=adapter)


def app_client(tenant=TENANT, app=APP, secret=None):
    secret = secret or os.environ["PRESENCED_APP_SECRET"]
    credential = ClientSecretCredential(tenant, app, secret, authority=URL, disable_instance_discovery=True)
    return graph(credential)


class PasswordCredential:
    """A delegated token for a test user from presenced's token endpoint (the password grant).

    azure-identity's UsernamePasswordCredential cannot be used here: MSAL's user-realm discovery
    calls the authority host on port 443 whatever port the authority names, so it only works when
    presenced serves HTTPS on 443.
    """

    def __init__(self, scopes):
        self.scopes = scopes

    def get_token(self, *scopes, **kwargs):
        response = httpx.post(
            f"{URL}/{TENANT}/oauth2/v2.0/token",
            data={
                "grant_type": "password",
                "client_id": APP,
                "username": os.environ["PRESENCED_USER_NAME"],
                "password": os.environ["PRESENCED_USER_PASSWORD"],
                "scope": " ".join(self.scopes),
            },
            verify=ssl.create_default_context(cafile=CA),
        )
        body = response.json()
        assert response.status_code == 200, body
        return AccessToken(body["access_token"], int(time.time()) + body["expires_in"])


def user_client():
    scopes = ["https://graph.microsoft.com/Presence.ReadWrite", "https://graph.microsoft.com/Presence.Read.All"]
    return graph(PasswordCredential(scopes), scopes=scopes)


def run(coroutine):
    """Runs one test's calls on one event loop (the client's connections belong to it)."""
    return asyncio.run(coroutine)


async def odata_error(awaitable) -> ODataError:
    try:
        await awaitable
    except ODataError as error:
        return error
    raise AssertionError("the call succeeded")


def test_set_presence_and_read_it_back_every_way():
    async def scenario():
        client = app_client()
        presence = client.users.by_user_id(USER).presence
        body = SetPresencePostRequestBody(session_id=APP, availability="Busy", activity="InACall", expiration_duration="PT1H")
        await presence.set_presence.post(body)
        read = await presence.get()
        assert (read.id, read.availability, read.activity) == (USER, "Busy", "InACall")
        assert read.out_of_office_settings.is_out_of_office is False
        by_id = await client.communications.presences.by_presence_id(USER).get()
        assert (by_id.availability, by_id.activity) == ("Busy", "InACall")
        query = PresenceRequestBuilder.PresenceRequestBuilderGetQueryParameters(select=["availability", "activity"])
        selected = await presence.get(request_configuration=RequestConfiguration(query_parameters=query))
        assert (selected.availability, selected.id) == ("Busy", None)
        await presence.clear_presence.post(ClearPresencePostRequestBody(session_id=APP))
        assert (await presence.get()).availability == "Offline"

    run(scenario())


def test_preferred_presence_overrides_a_live_session_and_clears():
    async def scenario():
        presence = app_client().users.by_user_id(OTHER_USER).presence
        session = SetPresencePostRequestBody(session_id=APP, availability="Available", activity="Available", expiration_duration="PT1H")
        await presence.set_presence.post(session)
        preferred = SetUserPreferredPresencePostRequestBody(availability="DoNotDisturb", activity="DoNotDisturb", expiration_duration="PT8H")
        await presence.set_user_preferred_presence.post(preferred)
        assert (await presence.get()).availability == "DoNotDisturb"
        await presence.clear_user_preferred_presence.post()
        assert (await presence.get()).availability == "Available"

    run(scenario())


def test_bulk_read_keeps_the_order():
    async def scenario():
        body = GetPresencesByUserIdPostRequestBody(ids=[OTHER_USER, USER])
        result = await app_client().communications.get_presences_by_user_id.post(body)
        assert [p.id for p in result.value] == [OTHER_USER, USER]

    run(scenario())


def test_the_signed_in_user_sets_status_message_and_work_location():
    async def scenario():
        me = user_client().me.presence
        message = PresenceStatusMessage(
            message=ItemBody(content="In the lab", content_type=BodyType.Text),
            expiry_date_time=DateTimeTimeZone(date_time="2099-01-01T17:00:00.0000000", time_zone="Pacific Standard Time"),
        )
        await me.set_status_message.post(SetStatusMessagePostRequestBody(status_message=message))
        await me.set_manual_location.post(SetManualLocationPostRequestBody(work_location_type=WorkLocationType.Office))
        await me.set_automatic_location.post(SetAutomaticLocationPostRequestBody(work_location_type=WorkLocationType.Remote))
        read = await me.get()
        assert read.id == USER
        assert read.status_message.message.content == "In the lab"
        assert read.status_message.expiry_date_time.time_zone == "Pacific Standard Time"
        assert read.status_message.published_date_time is not None
        assert read.work_location.work_location_type == WorkLocationType.Office
        await me.clear_automatic_location.post()
        await me.clear_location.post()
        assert (await me.get()).work_location.work_location_type == WorkLocationType.Unspecified

    run(scenario())


def test_a_bad_pair_maps_to_an_odata_error():
    async def scenario():
        body = SetPresencePostRequestBody(session_id=APP, availability="Busy", activity="Busy")
        error = await odata_error(app_client().users.by_user_id(USER).presence.set_presence.post(body))
        assert error.response_status_code == 400
        assert error.error.code == "InvalidArgument"
        assert "Busy/Busy" in error.error.message
        assert error.error.inner_error.request_id == error.response_headers["request-id"]

    run(scenario())


def test_a_python_timedelta_duration_is_refused_with_the_fix():
    async def scenario():
        body = SetUserPreferredPresencePostRequestBody(availability="Away", activity="Away", expiration_duration=datetime.timedelta(hours=8))
        error = await odata_error(app_client().users.by_user_id(USER).presence.set_user_preferred_presence.post(body))
        assert (error.response_status_code, error.error.code) == (400, "InvalidArgument")
        assert '"PT8H"' in error.error.message

    run(scenario())


def test_an_unknown_user_maps_to_not_found():
    async def scenario():
        error = await odata_error(app_client().users.by_user_id(NOBODY).presence.get())
        assert (error.response_status_code, error.error.code) == (404, "NotFound")
        assert error.error.inner_error.request_id

    run(scenario())


def test_a_missing_permission_maps_to_forbidden():
    async def scenario():
        reader = app_client(app=os.environ["PRESENCED_READER_APP"], secret=os.environ["PRESENCED_READER_SECRET"])
        assert (await reader.users.by_user_id(USER).presence.get()).id == USER
        body = SetPresencePostRequestBody(session_id=APP, availability="Away", activity="Away")
        error = await odata_error(reader.users.by_user_id(USER).presence.set_presence.post(body))
        assert (error.response_status_code, error.error.code) == (403, "Forbidden")
        assert "Presence.ReadWrite.All" in error.error.message

    run(scenario())


def test_throttling_maps_to_429_and_the_automatic_retry_then_succeeds():
    user = os.environ["PRESENCED_THROTTLED_USER"]
    no_retry = RequestConfiguration(options=[RetryHandlerOption(max_retries=0, should_retry=False)])

    async def scenario():
        client = app_client(
            tenant=os.environ["PRESENCED_THROTTLED_TENANT"],
            app=os.environ["PRESENCED_THROTTLED_APP"],
            secret=os.environ["PRESENCED_THROTTLED_SECRET"],
        )
        presence = client.users.by_user_id(user).presence
        # The throttled tenant allows 2 requests per 2 seconds: spend them.
        await presence.get()
        await presence.get()
        error = await odata_error(presence.get(request_configuration=no_retry))
        assert (error.response_status_code, error.error.code) == (429, "TooManyRequests")
        assert int(error.response_headers["retry-after"]) >= 1
        # With the SDK's default retry handler, the same call waits Retry-After and succeeds.
        return await presence.get()

    assert run(scenario()).id == user
