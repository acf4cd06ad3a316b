"""Cluster text by topic: TF-IDF features (sparse), cosine k-means, top terms per cluster.

A synthetic corpus is generated here: every document draws most of its words
from one of six topics and the rest from words common to all. scikit-learn's
``TfidfVectorizer`` turns it into a ``scipy.sparse`` CSR matrix (one row per
document, L2-normalised), which daskmeans clusters as it is: each row block
stays sparse (a sparse-dense product with the centres), the centres are
dense. The same matrix is then given as a Dask array of CSR blocks, as a
vectoriser mapped over the partitions of a large corpus would produce, and
clustered again: the same clusters (numbered as that run's draws make them).

Run::

    python examples/sparse_text.py            # 6,000 documents
    python examples/sparse_text.py 60000      # more

Prints the top terms of every cluster and how well the clusters recover the
topics the documents were drawn from.
"""

from __future__ import annotations

import sys

import numpy as np

TOPICS = {
    "space": "orbit rocket launch satellite astronaut lunar mars telescope galaxy nasa "
             "payload spacecraft",
    "cooking": "recipe oven garlic butter simmer dough flour roast sauce onion pepper bake",
    "football": "goal striker league match referee penalty keeper midfield coach season "
                "transfer stadium",
    "finance": "market stock bond yield inflation investor dividend equity bank rate "
               "portfolio earnings",
    "medicine": "patient clinical dose trial vaccine symptom diagnosis therapy hospital "
                "virus chronic surgeon",
    "music": "guitar album chord melody concert band vocal rhythm tempo lyrics drummer "
             "studio",
}
COMMON = ("the and for with this that from year new said people time world report week "
          "first").split()
#: A long tail of rarer words (names, places, typos...) makes the matrix sparse.
RARE = [f"w{i:04d}" for i in range(5000)]


def make_corpus(n_docs: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """``n_docs`` documents of 30 to 80 words and the topic each was drawn from."""
    rng = np.random.default_rng(seed)
    names = list(TOPICS)
    vocab = [TOPICS[t].split() for t in names]
    topics = rng.integers(0, len(names), n_docs)
    docs = []
    for t in topics:
        n_words = int(rng.integers(30, 81))
        # 50 % topic words, 30 % common ones, 20 % from the long tail (Zipf-like)
        kind = rng.choice(3, n_words, p=[0.5, 0.3, 0.2])
        rare = np.minimum(rng.zipf(1.5, n_words) - 1, len(RARE) - 1)
        words = np.where(kind == 0, rng.choice(vocab[t], n_words),
                         np.where(kind == 1, rng.choice(COMMON, n_words),
                                  np.asarray(RARE)[rare]))
        docs.append(" ".join(words))
    return docs, topics


def matched_accuracy(labels: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Share of documents whose cluster's majority topic is their own topic."""
    hits = 0
    for c in range(k):
        members = truth[labels == c]
        if members.size:
            hits += np.bincount(members).max()
    return hits / truth.size


def main(n_docs: int = 6000, *, n_top: int = 6, seed: int = 0) -> dict:
    import dask.array as da
    from sklearn.feature_extraction.text import TfidfVectorizer

    from daskmeans import KMeans

    docs, topics = make_corpus(n_docs, seed)
    vectorizer = TfidfVectorizer(sublinear_tf=True, dtype=np.float32)
    X = vectorizer.fit_transform(docs)  # scipy.sparse CSR, rows of unit length
    terms = np.asarray(vectorizer.get_feature_names_out())
    print(f"documents: {X.shape[0]}, terms: {X.shape[1]}, "
          f"stored values: {X.nnz} ({X.nnz / np.prod(X.shape):.1%} of the matrix)")

    k = len(TOPICS)
    km = KMeans(n_clusters=k, metric="cosine", random_state=seed).fit(X)
    for c, centre in enumerate(km.cluster_centers_):
        top = terms[np.argsort(centre)[::-1][:n_top]]
        size = int(np.count_nonzero(km.labels_ == c))
        print(f"cluster {c} ({size} documents): {' '.join(top)}")
    accuracy = matched_accuracy(km.labels_, topics, k)
    print(f"topics recovered: {accuracy:.3f}")

    # the same matrix as a Dask array of CSR row blocks: same seed, same clusters
    Xd = da.from_array(X, chunks=(max(1, n_docs // 4), -1))
    km_blocks = KMeans(n_clusters=k, metric="cosine", random_state=seed).fit(Xd)
    # (the random draws are keyed by block, so the clusters may be numbered differently)
    pairs = set(zip(km_blocks.labels_.compute().tolist(), km.labels_.tolist(), strict=True))
    same = len(pairs) == k
    print(f"Dask array of {Xd.numblocks[0]} CSR blocks finds the same clusters: {same}")
    return {"accuracy": accuracy, "same_labels": same, "inertia": km.inertia_,
            "top_terms": [list(terms[np.argsort(c)[::-1][:n_top]])
                          for c in km.cluster_centers_]}


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 6000)
