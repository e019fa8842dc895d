import itertools
import os

import pytest
from seaweed import ACCESS_KEY, SECRET_KEY, SeaweedServer, write_identities

_buckets = itertools.count()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """One SeaweedFS server for the whole test run, stopped at the end."""
    workdir = str(tmp_path_factory.mktemp("seaweedfs"))
    identities = write_identities(f"{workdir}/identities.json")
    server = SeaweedServer(workdir, extra=[f"-s3.config={identities}"]).start()
    yield server
    server.stop()


@pytest.fixture
def s3_env(monkeypatch):
    """Credentials through the standard AWS environment variables, nothing else."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def bucket(s3_server, s3_env):
    """A new, empty bucket for one test."""
    name = f"test-{os.getpid()}-{next(_buckets)}"
    s3_server.client().create_bucket(Bucket=name)
    return name
