"""Fixtures for the store tests: small real pools and a local S3-compatible server (moto) on loopback."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest

from tests.helpers import chunk_files


@pytest.fixture(scope="session")
def digits_source():
    from worth.data.sources import load_source

    return load_source("digits")


@pytest.fixture
def pixels16():
    from worth.data.encoders import get_encoder

    return get_encoder("pixels", dim=16, seed=3)


@pytest.fixture
def chunk_bytes():
    return chunk_files


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 on 127.0.0.1 (never the real network); yields storage_options for s3fs and a bucket name."""
    pytest.importorskip("moto")
    pytest.importorskip("s3fs")
    from moto.server import ThreadedMotoServer

    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
        os.environ.setdefault(k, v)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    import boto3

    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="worth-test")
    yield {"endpoint_url": endpoint, "key": "testing", "secret": "testing"}, "worth-test"
    server.stop()


@pytest.fixture
def rng():
    return np.random.default_rng(0)
