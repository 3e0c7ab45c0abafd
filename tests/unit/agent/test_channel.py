"""The agent's channel: signed calls, long-poll with backoff, the cached desired state."""

from __future__ import annotations

import io
import random
import threading

import pytest
from channel_support import INVENTORY, enrolled

from slicelab.agent.channel import Backoff, Channel, Poller
from slicelab.agent.config import config_from
from slicelab.agent.main import Agent, enroll
from slicelab.agent.state import AgentFiles
from slicelab.domain.errors import AuthenticationFailed, Unavailable
from slicelab.testbed.fakes import FakeAggregate, FakeRuntime, tar_of


def _enrolled(aggregate: FakeAggregate, files: AgentFiles) -> Channel:
    return enrolled(Channel("http://aggregate:8470", transport=aggregate.transport), files)


def test_enrollment_saves_the_key_private_and_is_one_time(
    aggregate: FakeAggregate, files: AgentFiles
) -> None:
    _enrolled(aggregate, files)
    identity = files.identity()
    assert identity is not None and identity.key == aggregate.key
    assert (files.root / "node.key").stat().st_mode & 0o777 == 0o600
    other = Channel("http://aggregate:8470", transport=aggregate.transport)
    with pytest.raises(AuthenticationFailed):
        other.enroll("tok-1", hostname="h", inventory=INVENTORY)


def test_a_saved_identity_is_reused_without_a_token(
    aggregate: FakeAggregate, files: AgentFiles
) -> None:
    _enrolled(aggregate, files)
    channel = Channel("http://aggregate:8470", transport=aggregate.transport)
    enroll(
        channel, files, token=None, hostname="h", inventory_doc=INVENTORY, stop=threading.Event()
    )
    assert channel.desired(after=0, wait=0) == aggregate.desired


def test_without_identity_or_token_enrollment_refuses(files: AgentFiles) -> None:
    channel = Channel("http://aggregate:8470", transport=FakeAggregate().transport)
    with pytest.raises(AuthenticationFailed, match="not enrolled"):
        enroll(channel, files, token=None, hostname="h", inventory_doc={}, stop=threading.Event())


def test_signed_calls_pass_the_servers_check(aggregate: FakeAggregate, files: AgentFiles) -> None:
    channel = _enrolled(aggregate, files)
    assert channel.desired(after=1, wait=0) is None
    channel.report({"generation_applied": 1})
    channel.post_result("c-1", {"exit_code": 0, "stdout": "", "stderr": ""})
    assert aggregate.failures == []
    assert aggregate.reports == [{"generation_applied": 1}]
    assert aggregate.results["c-1"]["exit_code"] == 0


def test_a_wrong_key_is_refused_as_forged(aggregate: FakeAggregate, files: AgentFiles) -> None:
    channel = _enrolled(aggregate, files)
    aggregate.key = bytes(32)
    with pytest.raises(AuthenticationFailed):
        channel.report({})
    assert aggregate.failures == ["forged"]


def test_a_skewed_clock_is_refused_as_stale(aggregate: FakeAggregate, files: AgentFiles) -> None:
    channel = _enrolled(aggregate, files)
    skewed = Channel(
        "http://aggregate:8470",
        identity=channel.identity,
        transport=aggregate.transport,
        clock=lambda: aggregate.clock() - 3600,
    )
    with pytest.raises(AuthenticationFailed):
        skewed.report({})
    assert aggregate.failures == ["stale"]


def test_an_unreachable_server_is_unavailable(aggregate: FakeAggregate, files: AgentFiles) -> None:
    channel = _enrolled(aggregate, files)
    aggregate.down = True
    with pytest.raises(Unavailable):
        channel.desired(after=0, wait=0)


def test_image_streams_into_the_sink(aggregate: FakeAggregate, files: AgentFiles) -> None:
    channel = _enrolled(aggregate, files)
    aggregate.images["minimal"] = b"tar bytes"
    sink = io.BytesIO()
    channel.fetch_image("minimal", sink)
    assert sink.getvalue() == b"tar bytes"
    with pytest.raises(Exception, match="no image"):
        channel.fetch_image("other", io.BytesIO())


def test_backoff_grows_with_full_jitter_up_to_the_cap() -> None:
    backoff = Backoff(base=0.5, cap=8.0, rng=random.Random(1))
    delays = [backoff.next() for _ in range(40)]
    assert all(0.25 <= d <= 8.0 for d in delays)
    assert max(delays[:2]) <= 1.0
    assert max(delays[10:]) > 4.0
    assert len(set(delays)) == len(delays)
    backoff.reset()
    assert backoff.next() <= 0.5


def test_poller_caches_new_state_then_backs_off_while_down(
    aggregate: FakeAggregate, files: AgentFiles
) -> None:
    seen: list[int] = []
    poller = Poller(
        _enrolled(aggregate, files),
        files,
        on_change=lambda doc: seen.append(doc["generation"]),
        wait=0,
        backoff=Backoff(rng=random.Random(0)),
    )
    assert poller.step() == 0.0
    assert seen == [1] and files.desired() == aggregate.desired
    assert poller.step() == 0.0 and seen == [1]
    aggregate.down = True
    first, second = poller.step(), poller.step()
    assert first > 0 and second > 0 and not poller.connected
    assert files.desired() == aggregate.desired
    aggregate.down = False
    aggregate.set_desired(boot_state="debug")
    assert poller.step() == 0.0 and poller.connected
    assert seen == [1, 2] and poller.backoff.failures == 0


def test_a_restarted_poller_resumes_after_the_cached_generation(
    aggregate: FakeAggregate, files: AgentFiles
) -> None:
    channel = _enrolled(aggregate, files)
    files.save_desired(aggregate.desired)
    poller = Poller(channel, files, on_change=lambda doc: None, wait=0)
    poller.step()
    assert aggregate.polls == [1]


def _sliver(sliver_id: str, **extra: object) -> dict[str, object]:
    return {
        "sliver_id": sliver_id,
        "urn": f"urn:publicid:IDN+test+sliver+{sliver_id}",
        "slice_urn": "urn:publicid:IDN+test+slice+s",
        "hostname": f"{sliver_id}.s.p.test",
        "image": "minimal",
        "cores": 1.0,
        "memory_mib": 64,
        "pids_max": 64,
        "run": "started",
        "restart_seq": 0,
        "ssh_keys": ["ssh-ed25519 AAAA alice"],
        "control": {"first_port": 20000, "count": 10},
        "interfaces": [],
        **extra,
    }


def test_the_agent_keeps_applying_the_cached_state_while_the_server_is_down(
    aggregate: FakeAggregate, files: AgentFiles
) -> None:
    now = [1000.0]
    aggregate.images["minimal"] = tar_of({"bin/sh": b"#!"})
    aggregate.set_desired(slivers=[_sliver("s-1", expires=1100.0)])
    channel = _enrolled(aggregate, files)
    runtime = FakeRuntime()
    config = config_from(server="http://aggregate:8470", state_dir=str(files.root))
    agent = Agent(
        config,
        runtime=runtime,
        channel=channel,
        files=files,
        host_ip="172.31.250.2",
        clock=lambda: now[0],
        inventory_doc=INVENTORY,
    )
    agent.poller.step()
    assert agent.step() == pytest.approx(30.0)
    assert aggregate.reports[-1]["slivers"][0]["state"] == "ready"
    aggregate.down = True
    now[0] = 1090.0
    assert agent.step() == pytest.approx(5.0)
    now[0] = 1100.0
    agent.step()
    assert ("stop", "s-1") in runtime.calls
    assert aggregate.image_fetches == ["minimal"]
    aggregate.down = False
    agent.step()
    report = aggregate.reports[-1]
    assert report["slivers"][0]["state"] == "stopped"
    assert report["slivers"][0]["ssh"] == {"host": "172.31.250.2", "port": 20000}
