"""The free-port probes of the offline stack: a port that only TIME-WAIT connections of a stopped server
hold is free, as it is for the servers (they bind with SO_REUSEADDR); a listening one is not."""

import socket
from contextlib import closing

import pytest

from carebus_local.serve import free_ports, port_is_free

HOST = "127.0.0.1"


def server_socket() -> socket.socket:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as http.server and werkzeug bind
    server.bind((HOST, 0))
    server.listen()
    return server


@pytest.fixture
def port_in_time_wait() -> int:
    """A port whose server accepted a connection, closed it first (so its end waits in TIME-WAIT) and
    stopped listening: a stack just stopped with Ctrl-C."""
    with closing(server_socket()) as server:
        port = server.getsockname()[1]
        with closing(socket.create_connection((HOST, port), timeout=5)) as client:
            accepted, _ = server.accept()
            accepted.close()
            client.recv(1)  # the server's FIN has arrived: the client's close completes the exchange
    return port


def test_a_port_held_only_in_time_wait_is_free(port_in_time_wait):
    assert port_is_free(HOST, port_in_time_wait)
    assert free_ports(HOST, (port_in_time_wait,)) == [port_in_time_wait]


def test_a_listening_port_is_not_free_and_another_is_chosen():
    with closing(server_socket()) as server:
        port = server.getsockname()[1]

        assert not port_is_free(HOST, port)
        [chosen] = free_ports(HOST, (port,))
        assert chosen != port


def test_free_ports_are_distinct():
    chosen = free_ports(HOST, (0, 0, 0))

    assert len(set(chosen)) == 3
