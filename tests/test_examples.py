"""The example scripts run (on small sizes) and print the expected numbers."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def printed_number(text: str, label: str) -> float:
    match = re.search(rf"{re.escape(label)}:? ([0-9.eE+-]+)", text)
    assert match, f"{label!r} not printed in:\n{text}"
    return float(match.group(1))


def test_blobs(tmp_path, capsys):
    res = load("blobs").main(tmp_path, n=6000, ks=range(2, 11), n_refs=2)
    text = capsys.readouterr().out
    assert "gaussian board: chosen k:" in text and "fk=9" in text
    assert res["gaussian"]["best_k"]["fk"] == 9
    assert res["gaussian"]["best_k"]["silhouette"] == 9
    for kind in ("uniform", "gaussian"):
        for suffix in ("k_selection.png", "clusters.png", "convergence.png", "lloyd.gif"):
            assert (tmp_path / f"{kind}_board_{suffix}").stat().st_size > 5000


def test_digits(tmp_path, capsys):
    pytest.importorskip("sklearn")
    res = load("digits").main(tmp_path, n_init=3, compare=False)
    text = capsys.readouterr().out
    acc = printed_number(text, "daskmeans accuracy")
    assert acc == pytest.approx(res["accuracy"], abs=1e-3)
    assert acc > 0.7
    assert (tmp_path / "digits_centres.png").stat().st_size > 10_000


def test_matched_accuracy_is_the_best_matching():
    import numpy as np

    acc, mapping = load("digits").matched_accuracy(np.array([0, 0, 1, 1, 2]),
                                                   np.array([2, 2, 0, 0, 0]), k=3)
    assert acc == pytest.approx(4 / 5)
    assert mapping[2] == 0 and mapping[0] == 1


def test_colour_quantisation(tmp_path, capsys):
    pytest.importorskip("sklearn")
    load("colour_quantisation").main(tmp_path, step=4)
    text = capsys.readouterr().out
    assert printed_number(text, "after") == 16
    assert printed_number(text, "before") > 1000
    assert printed_number(text, "mean squared error") < 0.01
    assert (tmp_path / "colour_quantisation.png").stat().st_size > 20_000


@pytest.mark.slow
def test_out_of_core(tmp_path, capsys):
    pytest.importorskip("distributed")
    res = load("out_of_core").main(tmp_path, n_samples=60_000, n_features=4, n_clusters=4,
                                   memory_limit="1GB", chunk_rows=15_000)
    text = capsys.readouterr().out
    assert printed_number(text, "labels") == 60_000
    assert res["n_labels"] == 60_000
    assert (tmp_path / "out_of_core_clusters.png").stat().st_size > 5000
    assert (tmp_path / "out_of_core_convergence.png").stat().st_size > 5000


def test_sparse_text(capsys):
    pytest.importorskip("sklearn")
    res = load("sparse_text").main(1500)
    text = capsys.readouterr().out
    assert printed_number(text, "topics recovered") == pytest.approx(res["accuracy"], abs=1e-3)
    assert res["accuracy"] > 0.95 and res["same_labels"]
    topic_words = [set(words.split()) for words in load("sparse_text").TOPICS.values()]
    for top in res["top_terms"]:  # every cluster's top terms are one topic's words
        assert any(set(top) <= words for words in topic_words), top
