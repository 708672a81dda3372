"""`carebus local up` starts again on the same ports right after Ctrl-C, while the stopped stack's
connections still hold them in TIME-WAIT (about a minute on Linux): a lab restarts it and carries on."""

import socket
from pathlib import Path

from cli_harness import local_up

from carebus_local.serve import free_ports

TCP_TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
TIME_WAIT = "06"  # the state's code in /proc/net/tcp


def ports_in_time_wait() -> set[int]:
    """Local ports with a connection in TIME-WAIT, from Linux's TCP tables."""
    ports = set()
    for table in TCP_TABLES:
        for line in table.read_text().splitlines()[1:] if table.exists() else []:
            _slot, local_address, _remote, state, *_ = line.split()
            if state == TIME_WAIT:
                ports.add(int(local_address.rsplit(":", 1)[1], 16))
    return ports


def request_closed_by_the_server(port: int, path: str) -> bytes:
    """One HTTP request with `Connection: close`, read until the server closes: its end (the server's
    port) is the one left in TIME-WAIT, as a browser or curl leaves it."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1."), answer
    return answer


def test_local_up_starts_again_on_the_same_ports_right_after_ctrl_c(tmp_path):
    aws_port, api_port = free_ports("127.0.0.1", (0, 0))
    ports = ("--port", str(aws_port), "--api-port", str(api_port))
    homes = [tmp_path / "first", tmp_path / "second"]
    for home in homes:
        home.mkdir()

    with local_up(homes[0], *ports, "--env-json", str(homes[0] / "env.json")) as first:
        assert "Serving until Ctrl-C" in first.startup, first.startup
        request_closed_by_the_server(aws_port, "/moto-api/")
        request_closed_by_the_server(api_port, "/v1/encounters")
    # Stopped by SIGINT, and exited 0 (local_up checks). Without TIME-WAIT this test would prove nothing.
    if TCP_TABLES[0].exists():
        assert {aws_port, api_port} & ports_in_time_wait(), "no TIME-WAIT left on the stack's ports"
    with local_up(homes[1], *ports, "--env-json", str(homes[1] / "env.json")) as second:
        assert "Serving until Ctrl-C" in second.startup, second.startup
        request_closed_by_the_server(aws_port, "/moto-api/")
