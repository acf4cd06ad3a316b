"""Real object storage: Zarr arrays in an S3 bucket served on 127.0.0.1 by moto's server mode."""

from __future__ import annotations

import socket

import dask.array as da
import numpy as np
import pytest

from daskmeans import KMeans, open_zarr, write_labels

BUCKET = "daskmeans-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """Start moto's S3 server for this module; stop it afterwards. Yields storage_options."""
    try:
        import s3fs  # noqa: F401
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        pytest.skip(f"S3 test server unavailable: {exc} (pip install 'moto[server]' s3fs)")
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    try:
        server.start()
    except Exception as exc:  # noqa: BLE001 - any failure to start means skip, with the reason
        pytest.skip(f"S3 test server could not start on 127.0.0.1:{port}: {exc!r}")
    opts = {
        "key": "testing",
        "secret": "testing",
        "endpoint_url": f"http://127.0.0.1:{port}",
        "client_kwargs": {"region_name": "us-east-1"},
        "use_listings_cache": False,
    }
    try:
        import boto3

        boto3.client(
            "s3", endpoint_url=opts["endpoint_url"], aws_access_key_id="testing",
            aws_secret_access_key="testing", region_name="us-east-1",
        ).create_bucket(Bucket=BUCKET)
        yield opts
    finally:
        server.stop()


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(11)
    centers = rng.uniform(-6, 6, size=(3, 5))
    y = rng.integers(0, 3, size=4000)
    return (centers[y] + rng.normal(scale=0.5, size=(4000, 5))).astype(np.float32)


def _upload(url, X, opts, zarr_format):
    import zarr

    z = zarr.create_array(store=url, shape=X.shape, chunks=(1000, X.shape[1]), dtype=X.dtype,
                          zarr_format=zarr_format, storage_options=opts, overwrite=True)
    z[:] = X


#: few blocks and passes: every block read is an HTTP request to the test server
PARAMS = {"n_clusters": 3, "random_state": 0, "init_rounds": 2, "max_iter": 20}


@pytest.mark.parametrize("zarr_format", [3, 2])
def test_fit_predict_from_s3_url(s3, data, zarr_format):
    url = f"s3://{BUCKET}/x{zarr_format}.zarr"
    _upload(url, data, s3, zarr_format)
    X = open_zarr(url, storage_options=s3)
    assert X.chunks[0][0] == 1000
    km = KMeans(**PARAMS).fit(url, storage_options=s3)
    ref = KMeans(**PARAMS).fit(da.from_array(data, chunks=(1000, 5)))
    np.testing.assert_array_equal(km.cluster_centers_, ref.cluster_centers_)
    labels = km.predict(url, storage_options=s3)
    assert isinstance(labels, da.Array)
    np.testing.assert_array_equal(labels.compute(), ref.labels_.compute())
    if zarr_format == 3:
        assert km.score(url, storage_options=s3) == pytest.approx(-ref.inertia_, rel=1e-5)


def test_labels_to_s3(s3, data):
    import zarr

    url = f"s3://{BUCKET}/in.zarr"
    _upload(url, data, s3, 3)
    km = KMeans(**PARAMS).fit(data)
    out = f"s3://{BUCKET}/in.labels.zarr"
    write_labels(km, url, out, storage_options=s3)
    z = zarr.open_array(store=out, mode="r", storage_options=s3)
    assert z.chunks == (1000,) and z.metadata.zarr_format == 3
    np.testing.assert_array_equal(z[:], km.labels_)
    with pytest.raises(FileExistsError):
        write_labels(km, url, out, storage_options=s3)
    km.predict(url, storage_options=s3).to_zarr(f"s3://{BUCKET}/p.zarr", storage_options=s3)
    p = zarr.open_array(store=f"s3://{BUCKET}/p.zarr", mode="r", storage_options=s3)
    np.testing.assert_array_equal(p[:], km.labels_)


def test_missing_s3_array_error(s3):
    with pytest.raises(ValueError, match="no Zarr array"):
        open_zarr(f"s3://{BUCKET}/nothing.zarr", storage_options=s3)
