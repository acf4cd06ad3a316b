"""Segment a Parquet "customers" table and keep every customer's id next to its cluster.

A synthetic customers table (id, age, income, visits per month, basket size,
and a text column) is written to a Parquet directory in several files. It is
read lazily with Dask (partition lengths are never computed), clustered with
``daskmeans.KMeans`` on the numeric columns, and the labels come back as a
Dask Series on the table's index, so each id keeps its label. Customers with a
missing value are left out of the fit (``nan_policy="omit"``) and labelled -1.

Run::

    python examples/customers_parquet.py OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import dask.dataframe as dd
import numpy as np
import pandas as pd

from daskmeans import KMeans

FEATURES = ["age", "income_k", "visits", "basket"]
#: Typical customers of four segments: age, income (thousands), visits/month, basket size.
SEGMENTS = np.array([[24, 28, 9, 15], [38, 65, 4, 60], [52, 90, 2, 140], [70, 35, 6, 30]],
                    dtype=float)


def make_customers(n=20_000, seed=0) -> pd.DataFrame:
    """A customers table with unique, shuffled ids and a few missing incomes."""
    rng = np.random.default_rng(seed)
    seg = rng.integers(0, len(SEGMENTS), size=n)
    values = SEGMENTS[seg] * rng.lognormal(0.0, 0.12, size=(n, len(FEATURES)))
    df = pd.DataFrame(values, columns=FEATURES)
    df.insert(0, "customer_id", rng.permutation(np.arange(100_000, 100_000 + n)))
    df["city"] = rng.choice(["Lyon", "Porto", "Turku", "Graz"], size=n)
    df.loc[rng.random(n) < 0.01, "income_k"] = np.nan
    return df


def main(out_dir="customers_example", n=20_000, k=4, seed=0, files=4) -> Path:
    """Write the table, cluster it, write ``labels.parquet`` (id -> segment); return ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = out / "customers.parquet"
    dd.from_pandas(make_customers(n, seed), npartitions=files).to_parquet(
        table, write_index=False
    )

    # lazy, one partition per file; the ids become the index, so labels carry them
    customers = dd.read_parquet(table, index="customer_id")
    # standardize=True: features scaled by their standard deviation (income would
    # dominate the distance otherwise), measured in the fit's first pass
    model = KMeans(n_clusters=k, nan_policy="omit", standardize=True, random_state=seed)
    labels = model.fit(customers[FEATURES]).labels_  # a Dask Series on customer_id
    labels.rename("segment").to_frame().to_parquet(out / "labels.parquet")

    back = pd.read_parquet(out / "labels.parquet")
    print(f"{len(back)} customers, {model.n_omitted_} left out (missing values), "
          f"{model.n_passes_} passes")
    print(back.groupby("segment").size().rename("customers").to_string())
    return out


if __name__ == "__main__":
    main(*(sys.argv[1:2] or []))
