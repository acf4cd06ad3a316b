"""k-means on a Zarr array in S3-compatible object storage, read by URL.

By default this starts a local S3 server (moto's server mode, on 127.0.0.1), so it
runs anywhere with ``pip install "moto[server]" s3fs``. To use a real bucket,
pass its URL and options instead::

    python examples/s3_zarr.py --url s3://my-bucket/emb.zarr \\
        --endpoint-url https://s3.example.org   # credentials from the environment

Nothing is downloaded whole: every pass streams the chunks, and the labels are
written back to the bucket chunk by chunk.
"""

from __future__ import annotations

import argparse
import socket

import numpy as np

import daskmeans
from daskmeans import KMeans


def local_s3():
    """Start moto's S3 server on a free local port; return (server, storage_options)."""
    import boto3
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="demo",
                 aws_secret_access_key="demo", region_name="us-east-1").create_bucket(
        Bucket="demo")
    opts = {"key": "demo", "secret": "demo", "endpoint_url": endpoint,
            "client_kwargs": {"region_name": "us-east-1"}}
    return server, opts


def upload_blobs(url: str, opts: dict, n: int = 200_000, d: int = 8, k: int = 5) -> None:
    """Write a small Zarr v3 array of blobs to ``url`` (the stand-in for your data)."""
    import zarr

    rng = np.random.default_rng(0)
    centers = rng.uniform(-10, 10, size=(k, d))
    z = zarr.create_array(store=url, shape=(n, d), chunks=(25_000, d), dtype="float32",
                          storage_options=opts, overwrite=True)
    for start in range(0, n, 25_000):
        y = rng.integers(0, k, size=25_000)
        z[start : start + 25_000] = centers[y] + rng.normal(size=(25_000, d))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="s3://bucket/array.zarr (default: a local test server)")
    parser.add_argument("--endpoint-url")
    parser.add_argument("--clusters", type=int, default=5)
    args = parser.parse_args(argv)

    server = None
    if args.url is None:
        server, opts = local_s3()
        url = "s3://demo/blobs.zarr"
        upload_blobs(url, opts)
    else:
        url = args.url
        opts = {"endpoint_url": args.endpoint_url} if args.endpoint_url else {}
    try:
        X = daskmeans.open_zarr(url, storage_options=opts)  # lazy, nothing read yet
        print(f"{url}: shape {X.shape}, {X.numblocks[0]} row blocks")
        km = KMeans(args.clusters, random_state=0).fit(url, storage_options=opts)
        print(f"inertia {km.inertia_:.6g} after {km.n_iter_} iterations, "
              f"{km.n_passes_} passes over the data")
        out = url.rstrip("/").removesuffix(".zarr") + ".labels.zarr"
        daskmeans.write_labels(km, url, out, storage_options=opts, overwrite=True)
        print(f"labels written to {out}")
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
