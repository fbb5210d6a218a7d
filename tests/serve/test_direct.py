"""Which ingress `skelray serve` picks, and the checks it makes before starting anything (no Ray)."""

from __future__ import annotations

import socket

import pytest

from skelray.errors import ConfigError
from skelray.runtime import free_port
from skelray.serve import direct


@pytest.mark.parametrize(("ingress", "local", "chosen"), [
    ("auto", True, "direct"),  # a Ray started here: Serve's processes get the setting
    ("auto", False, "proxy"),  # a cluster's Serve was started without it
    ("proxy", True, "proxy"),
    ("direct", True, "direct"),
])
def test_auto_takes_direct_ingress_where_skelray_starts_the_ray(ingress, local, chosen):
    assert direct.choose(ingress, local=local) == chosen


def test_direct_on_a_running_cluster_is_refused_naming_the_flag_and_the_fix():
    with pytest.raises(ConfigError, match="read when the cluster starts") as err:
        direct.choose("direct", local=False)
    assert err.value.where == "--ingress direct"
    assert "RAY_SERVE_ENABLE_DIRECT_INGRESS=1" in err.value.fix


def test_an_unknown_ingress_is_refused():
    with pytest.raises(ConfigError, match="unknown ingress 'haproxy'"):
        direct.choose("haproxy", local=True)


def test_a_port_something_listens_on_is_refused_before_anything_starts():
    port = free_port()
    direct.require_free("127.0.0.1", port)  # free: no error
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        with pytest.raises(ConfigError, match=f"port {port} on 127.0.0.1 is taken") as err:
            direct.require_free("127.0.0.1", port)
    assert err.value.where == "--port"


def test_process_settings_cannot_be_sent_to_a_running_cluster():
    from skelray.runtime import start_ray

    with pytest.raises(ConfigError, match="cannot reach a running cluster"):
        start_ray("ray://nowhere:10001", env=direct.environment())
