"""Download manager against a real HTTP server on 127.0.0.1 (Range, cuts, 404, stalls, wrong bytes)."""

from __future__ import annotations

import hashlib
import http.server
import os
import socket
import threading
import time
from collections import namedtuple

import pytest

from engine.errors import Cancelled, EngineError
from engine.models import download as dl

Served = namedtuple("Served", "path range_header status nbytes")


class FakeModelServer:
    """Serves in-memory files with Range support and hooks to misbehave."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.served: list[Served] = []
        self.cut_after: list[int] = []  # per request: send this many body bytes then drop the connection
        self.fail_status: list[int] = []  # per request: answer with this status first
        self.ignore_range = False
        self.omit_length = False  # HTTP/1.0 style: no Content-Length, the end of the body is the close
        self.stall_seconds = 0.0
        self.wake = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                server.handle(self)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def close(self) -> None:
        self.wake.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def handle(self, h: http.server.BaseHTTPRequestHandler) -> None:
        name = h.path.lstrip("/")
        range_header = h.headers.get("Range")
        if self.fail_status:
            status = self.fail_status.pop(0)
            self.served.append(Served(name, range_header, status, 0))
            h.send_error(status)
            return
        data = self.files.get(name)
        if data is None:
            self.served.append(Served(name, range_header, 404, 0))
            h.send_error(404)
            return
        start = 0
        if range_header and not self.ignore_range:
            start = int(range_header.split("=")[1].split("-")[0])
            if start >= len(data):
                self.served.append(Served(name, range_header, 416, 0))
                h.send_response(416)
                h.send_header("Content-Range", f"bytes */{len(data)}")
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            h.send_response(206)
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            h.send_response(200)
        body = data[start:]
        if not self.omit_length:
            h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if self.stall_seconds:
            self.wake.wait(self.stall_seconds)
        limit = self.cut_after.pop(0) if self.cut_after else len(body)
        sent = body[:limit]
        # recorded before sending, so the client can never finish before the record exists
        self.served.append(Served(name, range_header, 206 if start else 200, len(sent)))
        try:
            h.wfile.write(sent)
            h.wfile.flush()
        except OSError:
            pass
        if limit < len(body):
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def server():
    srv = FakeModelServer()
    yield srv
    srv.close()


def payload(n: int = 300_000, seed: int = 1) -> bytes:
    out = bytearray()
    block = hashlib.sha256(str(seed).encode()).digest()
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:n])


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def test_full_download_verified_with_progress(server, tmp_path):
    data = payload()
    server.files["m.pt"] = data
    events = []
    result = dl.download_file([server.url("m.pt")], tmp_path / "m.pt", expected_sha256=sha(data),
                              progress=events.append, chunk_size=8192)
    assert (tmp_path / "m.pt").read_bytes() == data
    assert result.sha256 == sha(data) and result.size == len(data) and result.resumed_from == 0
    assert not (tmp_path / "m.pt.part").exists()
    assert events and events[-1].done == len(data) and events[-1].total == len(data)
    assert all(a.done <= b.done for a, b in zip(events, events[1:]))
    assert events[-1].speed > 0


def test_cut_transfer_resumes_and_fetches_rest_only_once(server, tmp_path):
    data = payload()
    server.files["m.pt"] = data
    cut = 100_000
    server.cut_after = [cut, 0]  # the automatic retry (progress was made) gets nothing either
    with pytest.raises(dl.NetworkError):
        dl.download_file([server.url("m.pt")], tmp_path / "m.pt", retries=0, chunk_size=4096)
    part = tmp_path / "m.pt.part"
    assert part.stat().st_size == cut and not (tmp_path / "m.pt").exists()
    result = dl.download_file([server.url("m.pt")], tmp_path / "m.pt", expected_sha256=sha(data))
    assert (tmp_path / "m.pt").read_bytes() == data
    assert result.resumed_from == cut
    last = server.served[-1]
    assert last.range_header == f"bytes={cut}-" and last.nbytes == len(data) - cut
    assert sum(s.nbytes for s in server.served) == len(data)  # nothing fetched twice


def test_cut_is_retried_within_one_call(server, tmp_path):
    data = payload()
    server.files["m.pt"] = data
    server.cut_after = [50_000, 70_000]
    dl.download_file([server.url("m.pt")], tmp_path / "m.pt", expected_sha256=sha(data), retries=1, backoff=0.01)
    assert (tmp_path / "m.pt").read_bytes() == data
    assert len(server.served) == 3 and sum(s.nbytes for s in server.served) == len(data)


def test_no_content_length_and_estimated_size(server, tmp_path):
    data = payload(70_000)
    server.files["m.pt"] = data
    server.omit_length = True
    result = dl.download_file([server.url("m.pt")], tmp_path / "m.pt", expected_size=len(data) + 5_000,
                              expected_sha256=sha(data))
    assert result.size == len(data) and (tmp_path / "m.pt").read_bytes() == data
    assert len(server.served) == 1  # an estimate that differs from the real size is not a failure


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    data = payload()
    server.files["m.pt"] = data
    (tmp_path / "m.pt.part").write_bytes(b"\0" * 1000)  # junk that a ranged reply would have extended
    server.ignore_range = True
    dl.download_file([server.url("m.pt")], tmp_path / "m.pt", expected_sha256=sha(data))
    assert (tmp_path / "m.pt").read_bytes() == data


def test_416_with_complete_part_and_with_oversized_part(server, tmp_path):
    data = payload(50_000)
    server.files["m.pt"] = data
    (tmp_path / "m.pt.part").write_bytes(data)
    dl.download_file([server.url("m.pt")], tmp_path / "m.pt", expected_sha256=sha(data))
    assert server.served[-1].status == 416 and (tmp_path / "m.pt").read_bytes() == data
    (tmp_path / "n.pt.part").write_bytes(data + b"extra")
    server.files["n.pt"] = data
    dl.download_file([server.url("n.pt")], tmp_path / "n.pt", expected_sha256=sha(data))
    assert (tmp_path / "n.pt").read_bytes() == data


def test_hash_mismatch_is_rejected_and_cleaned_up(server, tmp_path):
    server.files["m.pt"] = payload(seed=2)  # the wrong bytes
    with pytest.raises(dl.HashMismatchError, match="sha256"):
        dl.download_file([server.url("m.pt")], tmp_path / "m.pt", expected_sha256=sha(payload(seed=1)))
    assert list(tmp_path.iterdir()) == []


def test_404_gives_clear_error(server, tmp_path):
    with pytest.raises(dl.NotFoundError, match="not found.*404"):
        dl.download_file([server.url("nope.pt")], tmp_path / "nope.pt")
    assert not (tmp_path / "nope.pt").exists()


def test_refused_connection_gives_clear_error_fast(tmp_path):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    t0 = time.monotonic()
    with pytest.raises(dl.NetworkError, match="refused") as info:
        dl.download_file([f"http://127.0.0.1:{port}/m.pt"], tmp_path / "m.pt", backoff=5)
    assert time.monotonic() - t0 < 3  # not retried with back-off: refusal is not transient
    assert "mirror" in str(info.value) and isinstance(info.value, EngineError)


def test_falls_back_to_next_url(server, tmp_path):
    data = payload(20_000)
    server.files["m.pt"] = data
    dl.download_file([server.url("missing/m.pt"), server.url("m.pt")], tmp_path / "m.pt", expected_sha256=sha(data))
    assert (tmp_path / "m.pt").read_bytes() == data


def test_cancel_leaves_resumable_part(server, tmp_path, monkeypatch):
    monkeypatch.setattr(dl, "PROGRESS_INTERVAL", 0.0)  # report every chunk so the cancel lands mid-way
    data = payload()
    server.files["m.pt"] = data
    cancel = threading.Event()

    def stop_early(p: dl.DownloadProgress) -> None:
        if p.done >= 60_000:
            cancel.set()

    with pytest.raises(dl.DownloadCancelled) as info:
        dl.download_file([server.url("m.pt")], tmp_path / "m.pt", progress=stop_early, cancel=cancel, chunk_size=4096)
    assert isinstance(info.value, Cancelled)
    part_size = (tmp_path / "m.pt.part").stat().st_size
    assert 60_000 <= part_size < len(data) and not (tmp_path / "m.pt").exists()
    result = dl.download_file([server.url("m.pt")], tmp_path / "m.pt", expected_sha256=sha(data))
    assert result.resumed_from == part_size and (tmp_path / "m.pt").read_bytes() == data
    assert server.served[-1].nbytes == len(data) - part_size


def test_stall_timeout(server, tmp_path):
    server.files["m.pt"] = payload(10_000)
    server.stall_seconds = 5
    t0 = time.monotonic()
    with pytest.raises(dl.StallError, match="0.5 s"):
        dl.download_file([server.url("m.pt")], tmp_path / "m.pt", stall_timeout=0.5, retries=0)
    assert 0.4 < time.monotonic() - t0 < 3


def test_transient_5xx_is_retried(server, tmp_path):
    data = payload(20_000)
    server.files["m.pt"] = data
    server.fail_status = [503, 502]
    dl.download_file([server.url("m.pt")], tmp_path / "m.pt", retries=2, backoff=0.01)
    assert (tmp_path / "m.pt").read_bytes() == data
    server.fail_status = [503] * 5
    with pytest.raises(dl.NetworkError, match="503"):
        dl.download_file([server.url("m.pt")], tmp_path / "x.pt", retries=1, backoff=0.01)


def test_disk_space_checked_up_front(server, tmp_path):
    server.files["m.pt"] = payload(10_000)
    fake = lambda path: namedtuple("Usage", "total used free")(10**9, 10**9, 5 * 10**6)  # noqa: E731
    with pytest.raises(dl.DiskSpaceError, match=r"needs .* free, .* available"):
        dl.download_file([server.url("m.pt")], tmp_path / "m.pt", expected_size=3 * 10**9, disk_usage=fake)
    with pytest.raises(dl.DiskSpaceError):  # size learnt from Content-Length is checked too
        dl.download_file([server.url("m.pt")], tmp_path / "m.pt", disk_usage=lambda p: fake(p)._replace(free=100))
    assert not (tmp_path / "m.pt").exists() and not (tmp_path / "m.pt.part").exists()  # nothing written


def test_mirror_rewriting(monkeypatch):
    url = "https://openaipublic.blob.core.windows.net/diffusion/jul-2021/a.pt"
    assert dl.apply_mirror(url, "https://m.example/models/", "a.pt") == "https://m.example/models/a.pt"
    assert (dl.apply_mirror(url, "https://openaipublic.blob.core.windows.net/diffusion=http://m.lan/d", "a.pt")
            == "http://m.lan/d/jul-2021/a.pt")
    assert dl.apply_mirror(url, "https://other.host=http://m.lan", "a.pt") is None
    monkeypatch.setenv("RESTORER_MODEL_MIRROR", "http://m.lan/")
    assert dl.candidate_urls([url], "a.pt") == ["http://m.lan/a.pt", url]
    assert dl.candidate_urls([], "b.pt") == ["http://m.lan/b.pt"]
    assert dl.candidate_urls([url], "a.pt", mirror="") == [url]


def test_sha256_file_matches_hashlib(tmp_path):
    data = payload(3_000_000)
    (tmp_path / "f").write_bytes(data)
    seen = []
    assert dl.sha256_file(tmp_path / "f", progress=lambda d, t: seen.append((d, t))) == sha(data)
    assert seen[-1] == (len(data), len(data))
    assert os.path.getsize(tmp_path / "f") == len(data)
