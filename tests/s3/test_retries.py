"""Throttling and 5xx answers are retried with backoff.

A small proxy on 127.0.0.1 sits in front of the real SeaweedFS server and
answers the first few uploads with S3's ``503 SlowDown`` and ``500
InternalError``; everything else is passed through unchanged (the Host
header too, so request signatures stay valid).
"""

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
from test_upload import bucket_objects, local_release, make_plate

from batchlib.s3 import TransferOptions, upload_plate


class FlakyProxy:
    """Forward to ``target``; fail the first ``failures`` PUT requests with the given statuses."""

    def __init__(self, target: str, failures: list[tuple[int, str]]):
        self.failures = list(failures)
        self.failed = 0
        self.lock = threading.Lock()
        host, port = urlsplit(target).hostname, urlsplit(target).port
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with proxy.lock:
                    failure = proxy.failures.pop(0) if self.command == "PUT" and proxy.failures else None
                if failure is not None:
                    proxy.failed += 1
                    status, code = failure
                    payload = f"<Error><Code>{code}</Code><Message>injected</Message></Error>".encode()
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                upstream = http.client.HTTPConnection(host, port, timeout=30)
                upstream.request(self.command, self.path, body=body, headers=dict(self.headers))
                answer = upstream.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                upstream.close()

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_throttling_and_server_errors_are_retried(tmp_path, s3_server, bucket):
    plate = make_plate(tmp_path)
    failures = [(503, "SlowDown"), (500, "InternalError"), (503, "ServiceUnavailable")]
    with FlakyProxy(s3_server.endpoint_url, failures) as proxy:
        report = upload_plate(plate, f"s3://{bucket}/r", proxy.endpoint_url, options=TransferOptions(), progress=False)
    assert proxy.failed == 3
    assert report.ok
    objects = bucket_objects(s3_server.client(), bucket)
    assert {k.removeprefix("r/P001/"): v for k, v in objects.items()} == local_release(plate)


def test_persistent_server_errors_fail_the_file_with_bucket_and_key(tmp_path, s3_server, bucket):
    plate = str(tmp_path / "P001")
    (tmp_path / "P001").mkdir()
    (tmp_path / "P001" / "a.h5").write_bytes(b"a")
    options = TransferOptions(max_attempts=2)
    with FlakyProxy(s3_server.endpoint_url, [(500, "InternalError")] * 2) as proxy:
        report = upload_plate(plate, f"s3://{bucket}/r", proxy.endpoint_url, options=options, progress=False)
    assert not report.ok
    ((rel, why),) = report.failed
    assert rel == "a.h5" and f"s3://{bucket}/r/P001/a.h5" in why and "InternalError" in why
    with pytest.raises(KeyError):
        bucket_objects(s3_server.client(), bucket)["r/P001/a.h5"]
