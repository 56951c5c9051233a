"""`vigil analyze --multivariate mmd|reconstruction` (with `--features` or `--embedding COL`) and
`vigil profile build --multivariate`: the JSON contract, the table, CSV and Parquet embeddings, the
numbers the engine (`agent.ml.multivariate`) gives, and the errors of bad input."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agent import cli
from agent.ml import multivariate as mv

REPO = Path(__file__).resolve().parents[2]
EMBEDDING_DIMS = 40


def table(seed: int, n: int, rho: float = 0.9, shift: float = 0.0) -> dict[str, list]:
    """Two correlated features (marginals N(0, 1) whatever `rho`), one independent, and an embedding."""
    rng = np.random.default_rng(seed)
    x = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=n)
    vectors = rng.normal(size=(n, EMBEDDING_DIMS)) + shift
    return {"a": x[:, 0].tolist(), "b": x[:, 1].tolist(), "c": rng.normal(size=n).tolist(),
            "kind": rng.choice(["x", "y"], size=n).tolist(), "emb": [v.round(5).tolist() for v in vectors]}


def write_csv(path: Path, data: dict[str, list]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(list(data))
        for row in zip(*data.values()):
            writer.writerow([json.dumps(v) if isinstance(v, list) else v for v in row])
    return path


def write_parquet(path: Path, data: dict[str, list]) -> Path:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    columns = {k: pa.array(v, pa.list_(pa.float64())) if k == "emb" else pa.array(v) for k, v in data.items()}
    pq.write_table(pa.table(columns), path)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("joint")
    return {"dir": d,
            "reference": write_csv(d / "reference.csv", table(1, 3000)),
            "current": write_csv(d / "current.csv", table(2, 2000)),
            "decorrelated": write_csv(d / "decorrelated.csv", table(3, 2000, rho=0.0)),
            "shifted": write_csv(d / "shifted.csv", table(4, 2000, shift=0.25)),
            "shifted_parquet": write_parquet(d / "shifted.parquet", table(4, 2000, shift=0.25))}


@pytest.fixture
def main(capsys):
    def run(*args) -> subprocess.CompletedProcess:
        code = cli.main([str(a) for a in args])
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, captured.out, captured.err)
    return run


def analyze_json(main, *args) -> dict:
    result = main("analyze", *args, "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def multivariate(report: dict) -> list[dict]:
    return [chunk["drift"]["multivariate"] for chunk in report["chunks"]]


def test_json_contract(files, main):
    for method in mv.METHODS:
        report = analyze_json(main, "--reference", files["reference"], "--current", files["current"],
                              "--features", "a,b,c", "--multivariate", method, "--chunk-size", "1000")
        for m in multivariate(report):
            assert list(m) == ["method", "statistic", "threshold", "p_value", "drifted"]
            assert m["method"] == method and m["drifted"] is False
            assert all(isinstance(m[k], float) for k in ("statistic", "threshold", "p_value"))


def test_without_the_option_the_report_is_unchanged(files, main):
    args = ["--reference", files["reference"], "--current", files["current"], "--features", "a,b,c",
            "--chunk-size", "1000"]
    plain = analyze_json(main, *args)
    with_it = analyze_json(main, *args, "--multivariate", "mmd")
    for chunk in with_it["chunks"]:
        del chunk["drift"]["multivariate"]
    assert with_it == plain
    assert "multivariate drift" not in main("analyze", *args).stdout


def test_a_correlation_change_drifts_jointly_not_per_column(files, main):
    for method in mv.METHODS:
        report = analyze_json(main, "--reference", files["reference"], "--current", files["decorrelated"],
                              "--features", "a,b,c", "--multivariate", method, "--chunk-size", "1000")
        assert [m["drifted"] for m in multivariate(report)] == [True, True], method
        assert [c["drift"]["drifted_features"] for c in report["chunks"]] == [[], []]


def test_numbers_are_the_engines(files, main):
    """The chunk's statistic is `multivariate.test` on the same rows (seeded by the chunk's index)."""
    from agent.ml.tables import TableFile

    report = analyze_json(main, "--reference", files["reference"], "--current", files["decorrelated"],
                          "--features", "a,b", "--multivariate", "mmd", "--chunk-size", "1500")
    reference = mv.fit(np.array([TableFile(files["reference"]).read(["a", "b"]).columns[n].numbers
                                 for n in "ab"]).T, (mv.MMD,), columns=["a", "b"])
    current = TableFile(files["decorrelated"]).read(["a", "b"])
    rows = np.array([current.columns[n].numbers for n in "ab"]).T
    for index, start in enumerate((0, 1500)):
        expected = mv.test(reference, mv.MMD, rows[start:start + 1500], seed=index)
        got = multivariate(report)[index]
        assert (got["statistic"], got["p_value"], got["drifted"]) == (expected.statistic, expected.p_value,
                                                                     expected.drifted)


def test_embeddings_in_csv_and_parquet(files, main):
    reports = [analyze_json(main, "--reference", files["reference"], "--current", files[name], "--embedding",
                            "emb", "--features", "a,b,c", "--multivariate", "mmd", "--chunk-size", "1000")
               for name in ("shifted", "shifted_parquet")]
    assert multivariate(reports[0]) == multivariate(reports[1])
    assert all(m["drifted"] for m in multivariate(reports[0]))
    unshifted = analyze_json(main, "--reference", files["reference"], "--current", files["current"], "--embedding",
                             "emb", "--multivariate", "mmd")
    assert not multivariate(unshifted)[0]["drifted"]
    assert "emb" not in unshifted["chunks"][0]["drift"]["features"]  # not a feature


def test_a_profile_keeps_what_the_methods_need(files, main):
    out = files["dir"] / "joint.vigilprofile"
    built = main("profile", "build", files["reference"], "--features", "a,b,c,kind", "--multivariate", "all",
                 "-o", out)
    assert built.returncode == 0, built.stderr
    assert "multivariate: mmd, reconstruction on features a, b, c (3 dimensions)" in built.stderr
    shown = json.loads(main("profile", "show", out, "--format", "json").stdout)["multivariate"]
    assert shown[0]["columns"] == ["a", "b", "c"] and shown[0]["mmd"]["sample_rows"] == mv.DEFAULT_SAMPLE
    assert "multivariate: features a, b, c" in main("profile", "show", out).stdout
    for method in mv.METHODS:
        args = ["--current", files["decorrelated"], "--multivariate", method, "--chunk-size", "1000"]
        from_profile = analyze_json(main, "--reference", out, *args)
        from_data = analyze_json(main, "--reference", files["reference"], "--features", "a,b,c,kind", *args)
        assert multivariate(from_profile) == multivariate(from_data)


def test_an_embedding_profile(files, main):
    out = files["dir"] / "embedding.vigilprofile"
    assert main("profile", "build", files["reference"], "--embedding", "emb", "--multivariate", "reconstruction",
                "--multivariate-sample", "500", "-o", out).returncode == 0
    report = analyze_json(main, "--reference", out, "--current", files["shifted_parquet"], "--embedding", "emb",
                          "--multivariate", "reconstruction")
    assert multivariate(report)[0]["method"] == "reconstruction"


def test_table_shows_the_verdict(files, main):
    result = main("analyze", "--reference", files["reference"], "--current", files["decorrelated"],
                  "--features", "a,b,c", "--multivariate", "reconstruction", "--chunk-size", "1000")
    lines = [line for line in result.stdout.splitlines() if "multivariate drift" in line]
    assert len(lines) == 2 and all(line.startswith("  multivariate drift (reconstruction): DRIFT: statistic ")
                                   for line in lines)


def test_a_small_chunk_is_untested(files, main, tmp_path):
    small = write_csv(tmp_path / "small.csv", table(5, 10))
    report = analyze_json(main, "--reference", files["reference"], "--current", small, "--features", "a,b",
                          "--multivariate", "mmd")
    assert multivariate(report) == [{"method": "mmd", "statistic": None, "threshold": None, "p_value": None,
                                     "drifted": False}]
    assert "untested (too few rows)" in main("analyze", "--reference", files["reference"], "--current", small,
                                             "--features", "a,b", "--multivariate", "mmd").stdout


def bad_embeddings(tmp_path: Path) -> Path:
    data = table(6, 5)
    data["emb"][3] = data["emb"][3][:7]
    return write_csv(tmp_path / "bad.csv", data)


@pytest.mark.parametrize("args, message", [
    (["--embedding", "emb"], "--embedding is read by the multivariate methods"),
    (["--embedding", "nope", "--multivariate", "mmd"], "unknown column 'nope' in --embedding"),
    (["--features", "a,kind", "--multivariate", "mmd"], "has 1 numeric feature (a); features are taken jointly"),
])
def test_errors_name_the_option(files, main, args, message):
    result = main("analyze", "--reference", files["reference"], "--current", files["current"], *args)
    assert result.returncode == 1 and message in result.stderr, result.stderr


def test_a_bad_embedding_row_is_named(files, main, tmp_path):
    result = main("analyze", "--reference", files["reference"], "--current", bad_embeddings(tmp_path),
                  "--embedding", "emb", "--multivariate", "mmd")
    assert result.returncode == 1
    assert f"column 'emb', data row 4: a list of 7 numbers, the rows before had {EMBEDDING_DIMS}" in result.stderr


def test_a_profile_without_the_fit_says_how_to_build_it(files, main):
    out = files["dir"] / "plain.vigilprofile"
    assert main("profile", "build", files["reference"], "--features", "a,b", "-o", out).returncode == 0
    result = main("analyze", "--reference", out, "--current", files["current"], "--multivariate", "mmd")
    assert result.returncode == 1
    assert "has no mmd fit on the numeric features (it has: none); build it with `vigil profile build " \
           "--multivariate mmd`" in result.stderr


def test_embeddings_of_another_width(files, main, tmp_path):
    data = table(7, 100)
    data["emb"] = [v[:10] for v in data["emb"]]
    narrow = write_csv(tmp_path / "narrow.csv", data)
    result = main("analyze", "--reference", files["reference"], "--current", narrow, "--embedding", "emb",
                  "--multivariate", "mmd")
    assert result.returncode == 1
    assert f"--embedding emb: lists of 10 numbers, the reference's have {EMBEDDING_DIMS}" in result.stderr


def test_the_real_command(files):
    result = subprocess.run([sys.executable, "-m", "agent", "analyze", "--reference", str(files["reference"]),
                             "--current", str(files["decorrelated"]), "--features", "a,b,c", "--multivariate",
                             "mmd", "--format", "json"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["chunks"][0]["drift"]["multivariate"]["drifted"] is True


def test_parquet_embeddings_as_json_text_or_not_lists(files, main, tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    data = table(4, 2000, shift=0.25)
    text = tmp_path / "text.parquet"
    pq.write_table(pa.table({**{k: pa.array(v) for k, v in data.items() if k != "emb"},
                             "emb": pa.array([json.dumps(v) for v in data["emb"]])}), text)
    args = ["--reference", files["reference"], "--embedding", "emb", "--multivariate", "mmd", "--chunk-size", "1000"]
    assert multivariate(analyze_json(main, "--current", text, *args)) == \
        multivariate(analyze_json(main, "--current", files["shifted_parquet"], *args))
    for reference, message in ((files["shifted_parquet"], "column 'a': a double column, not lists of numbers"),
                               (files["reference"], "column 'a', data row 1: not a JSON list of numbers: '-0.")):
        result = main("analyze", "--reference", reference, "--current", files["shifted_parquet"], "--embedding", "a",
                      "--multivariate", "mmd")
        assert result.returncode == 1 and message in result.stderr, result.stderr
