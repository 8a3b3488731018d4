"""JSON batching with the official Python SDK's batch classes (msgraph_core's BatchRequestItem,
BatchRequestContent, BatchRequestContentCollection and the client's BatchRequestBuilder), unmodified,
against presenced. The environment is the one test_presence.py describes.
"""

import os

from msgraph.generated.users.item.presence.set_presence.set_presence_post_request_body import (
    SetPresencePostRequestBody,
)
from msgraph_core.requests.batch_request_content import BatchRequestContent
from msgraph_core.requests.batch_request_content_collection import BatchRequestContentCollection
from msgraph_core.requests.batch_request_item import BatchRequestItem
from msgraph_core.requests.batch_response_content import BatchResponseContent

from test_presence import APP, NOBODY, OTHER_USER, USER, app_client, run


def test_a_batch_runs_each_request_and_reports_mixed_statuses():
    async def scenario():
        client = app_client()
        user = client.users.by_user_id(USER)
        body = SetPresencePostRequestBody(session_id=APP, availability="Busy", activity="InACall")
        set_presence = BatchRequestItem(user.presence.set_presence.to_post_request_information(body), id="set")
        content = BatchRequestContent({"set": set_presence})
        content.add_request("read", BatchRequestItem(user.presence.to_get_request_information(), id="read"))
        content.add_request(
            "nobody",
            BatchRequestItem(client.users.by_user_id(NOBODY).presence.to_get_request_information(), id="nobody"),
        )
        # The app has presence roles only: reading the directory is Graph's 403.
        content.add_request("profile", BatchRequestItem(user.to_get_request_information(), id="profile"))
        response = await client.batch.post(content)
        # The write took effect, as a later call sees.
        return response, await user.presence.get()

    response, presence = run(scenario())
    assert isinstance(response, BatchResponseContent)
    assert response.get_response_status_codes() == {"set": 200, "read": 200, "nobody": 404, "profile": 403}
    assert response.get_response_by_id("read").headers["Content-Type"].startswith("application/json")
    assert response.get_response_by_id("nobody").headers["Content-Type"].startswith("application/json")
    # msgraph-core keeps a response's body only when it is base64 text: the JSON objects Graph (and
    # presenced) send for JSON answers read as None there, so response_body() cannot parse them.
    assert (presence.id, presence.availability, presence.activity) == (USER, "Busy", "InACall")


def test_a_collection_of_more_than_20_requests_is_split_into_batches_the_server_accepts():
    async def scenario():
        client = app_client()
        collection = BatchRequestContentCollection()
        for index in range(25):
            user = USER if index % 2 else OTHER_USER
            info = client.users.by_user_id(user).presence.to_get_request_information()
            collection.add_batch_request_item(BatchRequestItem(info, id=str(index)))
        return await client.batch.post(collection)

    batches = run(scenario()).get_responses()
    assert len(batches) == 2
    statuses = {}
    for batch in batches:
        statuses.update(batch.get_response_status_codes())
    assert statuses == {str(index): 200 for index in range(25)}


def test_a_throttled_request_in_a_batch_has_its_own_retry_after():
    async def scenario():
        client = app_client(
            tenant=os.environ["PRESENCED_THROTTLED_TENANT"],
            app=os.environ["PRESENCED_THROTTLED_APP"],
            secret=os.environ["PRESENCED_THROTTLED_SECRET"],
        )
        presence = client.users.by_user_id(os.environ["PRESENCED_THROTTLED_USER"]).presence
        # The throttled tenant allows 2 requests per 2 seconds: three at once cannot all pass.
        content = BatchRequestContent(
            {str(index): BatchRequestItem(presence.to_get_request_information(), id=str(index)) for index in range(3)}
        )
        return await client.batch.post(content)

    response = run(scenario())
    statuses = response.get_response_status_codes()
    assert set(statuses.values()) <= {200, 429}, statuses
    throttled = [id for id, status in statuses.items() if status == 429]
    assert throttled, statuses
    for id in throttled:
        assert int(response.get_response_by_id(id).headers["Retry-After"]) >= 1
