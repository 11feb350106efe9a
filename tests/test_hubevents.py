"""The hub's events: answering the callers of a batch the loop failed to handle."""

from __future__ import annotations

import asyncio

import pytest

from chathub import closecodes
from chathub.errors import RegistrationFailed
from chathub.hubevents import Inbound, Register, Remote, Unregister, fail_batch
from chathub.protocol import Chat, ProtocolError
from tests.fakes import fake_client


async def test_waiting_registrations_fail_with_1011_and_finished_ones_are_left():
    loop = asyncio.get_running_loop()
    client, _ = fake_client("alice")
    waiting, finished = loop.create_future(), loop.create_future()
    finished.set_result(None)
    fail_batch([Register(client, None, waiting), Register(client, None, finished)])
    with pytest.raises(RegistrationFailed) as failed:
        waiting.result()
    assert failed.value.close == closecodes.INTERNAL_ERROR
    assert finished.result() is None


async def test_an_api_message_is_refused_unavailable_and_a_clients_has_no_one_to_tell():
    loop = asyncio.get_running_loop()
    client, ws = fake_client("alice")
    api = loop.create_future()
    fail_batch([Inbound(None, Chat(text="hi"), api, "api"), Inbound(client, Chat(text="hi"))])
    with pytest.raises(ProtocolError) as refused:
        api.result()
    assert refused.value.code == "unavailable"
    assert ws.frames() == []


async def test_kinds_nobody_waits_for_are_left_alone():
    loop = asyncio.get_running_loop()
    client, _ = fake_client("alice")
    done = loop.create_future()
    fail_batch([Unregister(client, done), Remote({"k": "m"})])
    assert not done.done()
