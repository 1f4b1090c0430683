"""A real network fault between the platform and (local)Stripe: a TCP proxy that forwards each request and,
when told to, loses the answer (the request was performed; the caller sees the connection drop, as after a
timeout). One request per connection: the proxy asks upstream to close after answering."""

from __future__ import annotations

import socket
import threading


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"connection:")]
    return b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n" + body


class LossyProxy:
    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(50)
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.lose_answers_to: str = ""  # a request-line prefix, e.g. "POST /v1/payment_intents "
        self.answers_to_lose = 0
        self.forwarded: list[str] = []  # request lines that reached upstream
        self.lost: list[str] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def lose_next(self, request_prefix: str, count: int = 1) -> None:
        with self._lock:
            self.lose_answers_to, self.answers_to_lose = request_prefix, count

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            request = _read_request(conn)
            if not request:
                return
            line = request.split(b"\r\n", 1)[0].decode()
            with socket.create_connection(("127.0.0.1", self.upstream_port)) as upstream:
                upstream.sendall(request)
                answer = b""
                while chunk := upstream.recv(65536):
                    answer += chunk
            with self._lock:
                self.forwarded.append(line)
                lose = bool(self.answers_to_lose) and line.startswith(self.lose_answers_to)
                if lose:
                    self.answers_to_lose -= 1
                    self.lost.append(line)
            if lose:
                conn.shutdown(socket.SHUT_RDWR)  # performed upstream; the caller never hears back
                return
            conn.sendall(answer)

    def close(self) -> None:
        self.listener.close()
