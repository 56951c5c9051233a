"""`vigil profile build|show` and `vigil analyze`: the offline commands over CSV/Parquet files.

A few cases run the real command (`python -m agent …`) in a subprocess; the rest call the
functions. The numbers must be the engine's: the tests compare them with `drift.evaluate` and
`health.column_health` run directly on the same values.
"""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agent import cli
from agent.ml import drift, health, profile as profiles
from agent.ml.columns import RawColumn
from agent.ml.offline.commands import drift_config
from agent.ml.offline.errors import OfflineError
from agent.ml.offline.files import is_profile_file
from agent.ml.offline.reference import Roles, build_profile
from agent.ml.tables import DataError, Progress, TableFile, parse_cells

REPO = Path(__file__).resolve().parents[2]
TESTDATA = REPO / "tests" / "testdata" / "ml"
COLUMNS = ["id", "age", "income", "city", "pred", "score", "label"]
ROLE_ARGS = ["--prediction", "pred", "--score", "score", "--label", "label", "--id-column", "id"]


def rows(n: int, seed: int, age_shift: float = 0.0) -> list[list]:
    """Rows of COLUMNS: numeric age (with missing cells), income, categorical city (with NA),
    a categorical prediction, its score and a ground-truth label."""
    rng = np.random.default_rng(seed)
    age = rng.normal(40 + age_shift, 10, n).round(3)
    income = rng.lognormal(10, 0.5, n).round(2)
    city = rng.choice(["paris", "lyon", "nice"], n, p=[0.5, 0.3, 0.2])
    score = rng.random(n).round(4)
    label = rng.choice(["yes", "no"], n)
    out = []
    for i in range(n):
        out.append([i, "" if i % 20 == 3 else float(age[i]), float(income[i]), "NA" if i % 50 == 7 else str(city[i]),
                    "yes" if score[i] > 0.5 else "no", float(score[i]), str(label[i])])
    return out


def write_csv(path: Path, data: list[list]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        writer.writerows(data)
    return path


def engine_columns(data: list[list]) -> dict[str, RawColumn]:
    """The same rows as RawColumns built without the CSV reader: "" and "NA" are None."""
    return {name: RawColumn.from_values(None if row[i] in ("", "NA") else row[i] for row in data)
            for i, name in enumerate(COLUMNS)}


def vigil(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """The real command in a subprocess."""
    return subprocess.run([sys.executable, "-m", "agent", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


@pytest.fixture
def main(capsys):
    """The same command in this process (`agent.cli.main`): faster than a subprocess per case."""
    def run(*args: str) -> subprocess.CompletedProcess:
        code = cli.main([str(a) for a in args])
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, captured.out, captured.err)
    return run


def no_nan_tokens(text: str):
    def refuse(token):
        raise AssertionError(f"non-JSON token {token} in the output")
    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("offline")
    reference = rows(3000, seed=1)
    return {
        "dir": d,
        "reference": write_csv(d / "reference.csv", reference),
        "current": write_csv(d / "current.csv", rows(2500, seed=2)),
        "shifted": write_csv(d / "shifted.csv", rows(2500, seed=3, age_shift=10)),
    }


@pytest.fixture(scope="module")
def profile_file(files) -> Path:
    out = files["dir"] / "model.vigilprofile"
    result = vigil("profile", "build", files["reference"], "--model", "fraud", "--version", "7", *ROLE_ARGS,
                   "-o", out)
    assert result.returncode == 0, result.stderr
    assert "3 features" in result.stderr and "2 prediction outputs" in result.stderr
    return out


# --- reading -------------------------------------------------------------------

def test_cells_are_numbers_strings_or_missing():
    column = parse_cells(["1", "-2.5e3", " 7 ", "", "NA", "n/a", "null", "NaN", "None", "inf", "abc", " x "])
    assert column.numbers[:3].tolist() == [1.0, -2500.0, 7.0]
    assert column.is_missing.tolist() == [False] * 3 + [True] * 6 + [False] * 3
    assert column.numbers[9] == math.inf
    assert column.strings[10:].tolist() == ["abc", "x"]
    numbers_only = parse_cells(["1.5", "nan", "2"])
    assert numbers_only.is_missing.tolist() == [False, True, False]
    assert not numbers_only.is_string.any()


def test_csv_quirks_bom_blanks_quoted_newlines():
    table = TableFile(TESTDATA / "quirks.csv", progress=False)
    assert table.columns == ["a", "b", "c"]
    data = table.read()
    assert data.rows == 3
    assert data.columns["a"].numbers.tolist() == [1.0, 2.0, 3.0]
    assert data.columns["b"].strings.tolist() == ["multi\nline", "y", "z"]
    assert data.columns["c"].is_missing.tolist() == [True, True, False]
    assert data.columns["c"].numbers[2] == math.inf


@pytest.mark.parametrize("name, message", [
    ("ragged.csv", "line 3: 2 fields, the header has 3"),
    ("duplicate_header.csv", "duplicate column names in the header: a"),
    ("unnamed_column.csv", "column 1 has no name"),
    ("latin1.csv", "line 2: not UTF-8 text"),
    ("absent.csv", "no such file"),
])
def test_unreadable_csv_is_a_clear_error(name, message):
    with pytest.raises(DataError, match=message):
        TableFile(TESTDATA / name, progress=False).read()


def test_bad_rows_are_reported_by_line(tmp_path):
    """Rows are taken from the csv reader in batches: a bad row deep in the file still gets its line."""
    path = tmp_path / "long.csv"
    lines = ["a,b"] + [f"{i},x" for i in range(20_000)]
    lines[12_345] = "1,2,3"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="line 12346: 3 fields, the header has 2"):
        TableFile(path, progress=False).read()
    lines[3] = '3,"two\nlines"'  # a quoted value spanning lines, in an earlier batch: still exact
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="line 12347: 3 fields"):
        TableFile(path, progress=False).read()
    lines[12_000] = '3,"two\nlines"'  # in the same batch: the place is given as the data row
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"data row 12345 \(counting blank lines\): 3 fields"):
        TableFile(path, progress=False).read()
    path.write_text('a,b\n1,"x"y\n')
    with pytest.raises(DataError, match="line 2: not valid CSV"):
        TableFile(path, progress=False).read()


def test_blank_lines_are_skipped_or_missing_in_one_column(tmp_path):
    path = tmp_path / "blank.csv"
    path.write_text("a,b\n1,2\n\n3,4\n")
    assert TableFile(path).read().rows == 2
    path.write_text("a\n1\n\n3\n")
    column = TableFile(path).read().columns["a"]
    assert column.is_missing.tolist() == [False, True, False]


def test_chunks_split_rows_and_last_is_smaller(files):
    table = TableFile(files["current"], progress=False)
    chunks = list(table.blocks(["age", "city"], 1000))
    assert [c.rows for c in chunks] == [1000, 1000, 500]
    whole = table.read(["age", "city"])
    np.testing.assert_array_equal(np.concatenate([c.columns["age"].numbers for c in chunks]),
                                  whole.columns["age"].numbers)
    assert [c.rows for c in table.blocks(["age"], 2500)] == [2500]
    assert [c.rows for c in table.blocks(["age"], 7)][-1] == 2500 % 7


def test_parquet_without_pyarrow_says_so(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    path = tmp_path / "data.parquet"
    path.write_bytes(b"PAR1")
    with pytest.raises(DataError, match="reading Parquet needs pyarrow"):
        TableFile(path)


def test_parquet_gives_the_csv_profile(files, tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    data = rows(3000, seed=1)
    columns = engine_columns(data)
    arrays = {name: pa.array([None if (v is None or (isinstance(v, float) and math.isnan(v))) else v
                              for v in (c.strings[i] if c.strings[i] is not None else c.numbers[i]
                                        for i in range(len(c)))]) for name, c in columns.items()}
    pq.write_table(pa.table(arrays), tmp_path / "reference.parquet")
    from_parquet = build_profile(TableFile(tmp_path / "reference.parquet").read(),
                                         roles=Roles("pred", "score", label="label", id_column="id"))
    from_csv = build_profile(TableFile(files["reference"]).read(),
                                     roles=Roles("pred", "score", label="label", id_column="id"))
    assert profiles.to_proto(from_parquet).features == profiles.to_proto(from_csv).features
    assert profiles.to_proto(from_parquet).predictions == profiles.to_proto(from_csv).predictions


def test_progress_bar_only_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    now = [0.0]
    stream = Terminal()
    bar = Progress("reading x.csv", 200, stream=stream, clock=lambda: now[0])
    bar.update(50, 10)
    assert stream.getvalue() == ""  # a read that ends quickly draws nothing
    now[0] = 1.0
    bar.update(100, 20)
    assert "reading x.csv [" in stream.getvalue() and "50%" in stream.getvalue()
    bar.close()
    assert stream.getvalue().endswith("\r\x1b[K")
    quiet = io.StringIO()
    bar = Progress("reading x.csv", 200, stream=quiet, delay=0)
    bar.update(100, 20)
    bar.close()
    assert quiet.getvalue() == ""


# --- profile build / show --------------------------------------------------------

def test_profile_build_keeps_features_and_prediction_outputs(files, profile_file):
    built = profiles.load(profile_file)
    assert (built.model_name, built.model_version, built.rows) == ("fraud", "7", 3000)
    assert built.source == f"file:{files['reference']}"
    assert list(built.features) == ["age", "income", "city"]  # not id, pred, score, label
    assert list(built.predictions) == ["ml.prediction.label", "ml.prediction.score"]
    assert built.features["age"].kind == "numeric" and built.features["age"].missing == 150
    assert built.features["city"].kind == "categorical" and built.features["city"].missing == 60
    assert set(built.features["city"].categories) == {"paris", "lyon", "nice"}
    assert built.predictions["ml.prediction.label"].categories.keys() == {"yes", "no"}
    # The same profile as the engine builds from the same values.
    columns = engine_columns(rows(3000, seed=1))
    for name in ("age", "income", "city"):
        assert profiles._column_to_proto(built.features[name]) == \
            profiles._column_to_proto(profiles.build_column(name, columns[name]))


def test_prediction_output_names_follow_the_column_kind(files):
    table = TableFile(files["reference"]).read()
    numeric = build_profile(table, roles=Roles(prediction="score"), features=["age"])
    assert list(numeric.predictions) == ["ml.prediction.value"]
    forced = build_profile(table, roles=Roles(prediction="pred", confidence="score"),
                                   features=["age"], categorical=["age"])
    assert list(forced.predictions) == ["ml.prediction.label", "ml.prediction.confidence"]
    assert forced.features["age"].kind == "categorical"


def test_profile_show_lists_the_columns(profile_file, main):
    result = vigil("profile", "show", profile_file)
    assert result.returncode == 0, result.stderr
    for text in ("fraud", "age", "income", "city", "numeric", "categorical", "ml.prediction.label",
                 "ml.prediction.score", "paris", "bins"):
        assert text in result.stdout
    shown = no_nan_tokens(main("profile", "show", profile_file, "--format", "json").stdout)
    assert [c["name"] for c in shown["features"]] == ["age", "income", "city"]
    assert shown["features"][0]["numeric"]["bin_counts"] and shown["rows"] == 3000


# --- analyze --------------------------------------------------------------------

def run_json(run, *args) -> dict:
    result = run("analyze", *args, "--format", "json")
    assert result.returncode == 0, result.stderr
    return no_nan_tokens(result.stdout)


def test_unshifted_data_does_not_drift(files, profile_file):
    report = run_json(vigil, "--reference", profile_file, "--current", files["current"], *ROLE_ARGS)
    [chunk] = report["chunks"]
    assert chunk["rows"] == 2500
    assert chunk["drift"]["detected"] is False
    assert chunk["drift"]["drifted_features"] == []


def test_shifted_feature_drifts(files, profile_file, main):
    report = run_json(vigil, "--reference", profile_file, "--current", files["shifted"], *ROLE_ARGS)
    drift_ = report["chunks"][0]["drift"]
    assert drift_["drifted_features"] == ["age"]
    assert drift_["features"]["age"]["drifted"] is True
    assert drift_["features"]["income"]["drifted"] is False
    assert drift_["share"] == pytest.approx(1 / 5)
    assert drift_["detected"] is False  # one of five columns: under the default drift share
    report = run_json(main, "--reference", profile_file, "--current", files["shifted"], *ROLE_ARGS,
                      "--drift-share", "0.2")
    assert report["chunks"][0]["drift"]["detected"] is True


def check_contract(report: dict) -> None:
    assert set(report) == {"reference_rows", "chunks"} and type(report["reference_rows"]) is int
    for index, chunk in enumerate(report["chunks"]):
        assert set(chunk) - {"performance"} == {"index", "rows", "drift", "health"}
        if "performance" in chunk:
            check_performance(chunk["performance"])
        assert chunk["index"] == index and type(chunk["rows"]) is int
        d = chunk["drift"]
        assert set(d) == {"detected", "share", "drifted_features", "features"}
        assert type(d["detected"]) is bool and type(d["share"]) is float
        assert d["drifted_features"] == [n for n, f in d["features"].items() if f["drifted"]]
        for feature in d["features"].values():
            assert set(feature) == {"type", "drifted", "p_value", "statistics"}
            assert feature["type"] in ("numeric", "categorical") and type(feature["drifted"]) is bool
            assert feature["p_value"] is None or type(feature["p_value"]) is float
            expected = {"ks", "psi", "wasserstein_normed", "jensen_shannon"} if feature["type"] == "numeric" \
                else {"chi2", "psi", "jensen_shannon"}
            assert set(feature["statistics"]) == expected
            assert all(v is None or type(v) is float for v in feature["statistics"].values())
        assert set(chunk["health"]) == set(d["features"])
        for h in chunk["health"].values():
            assert set(h) == {"missing", "sentinel", "type_mismatch", "out_of_range", "unseen_category"}
            assert all(type(v) is float for v in h.values())


def check_performance(p: dict) -> None:
    """The `performance` object of a chunk (present when the reference or the current data has labels)."""
    assert p["problem"] in ("binary", "multiclass", "regression")
    metrics = ("mae", "rmse", "mape") if p["problem"] == "regression" else \
        ("accuracy", "precision", "recall", "f1", "roc_auc")
    sources = ("realized",) if p["problem"] == "regression" else ("estimated", "realized")
    keys = {"problem", "rows", "labeled_rows", "bounds", "degraded", "degraded_metrics"} | \
        {f"{s}_{m}" for s in sources for m in metrics}
    if p["labeled_rows"] and p["problem"] != "regression":
        keys |= {"macro", "classes"}
    assert set(p) == keys
    assert type(p["rows"]) is int and type(p["labeled_rows"]) is int and type(p["degraded"]) is bool
    assert all(v is None or type(v) is float for k, v in p.items() if k.startswith(("estimated_", "realized_")))
    assert all(type(v) is float and k in keys for k, v in p["bounds"].items())
    assert p["degraded"] == bool(p["degraded_metrics"]) and set(p["degraded_metrics"]) <= set(p["bounds"])


def test_json_matches_the_contract(files, profile_file, tmp_path, main):
    report = run_json(main, "--reference", profile_file, "--current", files["shifted"], *ROLE_ARGS,
                      "--chunk-size", "1000")
    check_contract(report)
    assert report["reference_rows"] == 3000
    assert list(report["chunks"][0]["drift"]["features"]) == ["age", "income", "city", "pred", "score"]
    # A column with too few values is not tested: null p-value and statistics, still valid JSON.
    data = rows(40, seed=4)
    for row in data:
        row[1] = ""
    sparse = write_csv(tmp_path / "sparse.csv", data)
    out = tmp_path / "report.json"
    result = main("analyze", "--reference", profile_file, "--current", sparse, *ROLE_ARGS, "--format", "json",
                   "-o", out)
    assert result.returncode == 0 and result.stdout == ""
    report = no_nan_tokens(out.read_text())
    check_contract(report)
    age = report["chunks"][0]["drift"]["features"]["age"]
    assert age["p_value"] is None and age["drifted"] is False
    assert set(age["statistics"].values()) == {None}
    assert report["chunks"][0]["health"]["age"]["missing"] == 1.0


def test_numbers_are_the_engines(files, main):
    """Reference CSV, chunks of 1000: every number equals drift.evaluate / column_health on the same values."""
    report = run_json(main, "--reference", files["reference"], "--current", files["shifted"], *ROLE_ARGS,
                      "--chunk-size", "1000", "--correction", "benjamini_hochberg")
    assert [c["rows"] for c in report["chunks"]] == [1000, 1000, 500]
    reference = engine_columns(rows(3000, seed=1))
    current = engine_columns(rows(2500, seed=3, age_shift=10))
    profile = profiles.Profile("m", "", 3000, {n: profiles.build_column(n, reference[n])
                                               for n in ("age", "income", "city")},
                               {"pred": profiles.build_column("pred", reference["pred"]),
                                "score": profiles.build_column("score", reference["score"])})
    config = drift.DriftConfig(correction="benjamini_hochberg")
    for index, chunk in enumerate(report["chunks"]):
        window = {n: RawColumn(c.numbers[index * 1000:(index + 1) * 1000], c.strings[index * 1000:(index + 1) * 1000])
                  for n, c in current.items()}
        expected = drift.evaluate(profile, window, chunk["rows"], config)
        assert chunk["drift"]["share"] == expected.share
        assert chunk["drift"]["detected"] == expected.detected
        assert chunk["drift"]["drifted_features"] == expected.drifted_columns == ["age"]
        for name, column in expected.columns.items():
            got = chunk["drift"]["features"][name]
            assert got["p_value"] == column.p_adjusted
            assert got["statistics"] == column.statistics
            assert got["drifted"] == column.drifted
            assert chunk["health"][name] == health.column_health(profile.columns()[name], window[name],
                                                                 config.sentinels).as_dict()


def test_table_marks_drifted_features(files, profile_file):
    result = vigil("analyze", "--reference", profile_file, "--current", files["shifted"], *ROLE_ARGS,
                   "--chunk-size", "2000")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.count("chunk ") == 2 and "chunk 1: rows 2001-2500 (500 rows)" in out
    # The verdict reads as one: 1 of 5 columns drifted is below the 50% that makes it dataset drift.
    verdicts = [line.split("): ", 1)[1] for line in out.splitlines() if line.startswith("chunk ")]
    assert all(v == "dataset drift: no (1 of 5 columns drifted, threshold 50%): age" for v in verdicts), verdicts
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ") and line.split()}
    assert "DRIFT" in lines["age"] and "*" in lines["age"]
    for name in ("income", "city", "pred", "score"):
        assert "DRIFT" not in lines[name] and " ok " in lines[name]
    header = lines["column"].split()
    assert header[:4] == ["column", "type", "drift", "p_value"]
    # aligned: every row of a block is as wide as its header's columns
    block = [line for line in out.splitlines()[3:] if line.startswith("  ")][:6]
    assert len({line.index(line.split()[1]) for line in block}) == 1


@pytest.mark.parametrize("reservoir", [None, 500])
def test_profile_reference_gives_the_csv_reference_verdicts(files, tmp_path, reservoir, main):
    extra = [] if reservoir is None else ["--reservoir", str(reservoir)]
    profile_path = tmp_path / "model.pb"
    # The alert bounds are measured on windows of the chunk size, as a data-file reference does.
    assert main("profile", "build", files["reference"], *ROLE_ARGS, *extra, "--window-rows", "800",
                "-o", profile_path).returncode == 0
    args = ["--current", files["shifted"], *ROLE_ARGS, "--chunk-size", "800"]
    from_profile = run_json(main, "--reference", profile_path, *args)
    from_csv = run_json(main, "--reference", files["reference"], *args, *extra)
    assert from_profile == from_csv


def test_profile_detected_without_its_extension(files, profile_file, tmp_path):
    renamed = tmp_path / "reference.bin"
    renamed.write_bytes(profile_file.read_bytes())
    assert is_profile_file(renamed)
    assert not is_profile_file(files["reference"])
    odd = tmp_path / "reference.data"
    odd.write_bytes(files["reference"].read_bytes())
    assert not is_profile_file(odd)


def test_outputs_without_a_column_are_left_out_with_a_warning(files, profile_file, main):
    result = main("analyze", "--reference", profile_file, "--current", files["current"], "--format", "json")
    assert result.returncode == 0, result.stderr
    assert "ml.prediction.label" in result.stderr and "--prediction" in result.stderr
    report = no_nan_tokens(result.stdout)
    assert list(report["chunks"][0]["drift"]["features"]) == ["age", "income", "city"]


def test_features_option_and_sentinels(files, profile_file, main):
    report = run_json(main, "--reference", profile_file, "--current", files["current"], "--features", "age,city",
                      "--sentinel", "paris", "--sentinel", "-999")
    chunk = report["chunks"][0]
    assert list(chunk["drift"]["features"]) == ["age", "city"]
    assert chunk["health"]["city"]["sentinel"] > 0.4
    config = drift_config(alpha=0.01, correction="benjamini_hochberg", drift_share=0.3,
                                  sentinels=["-999", "n/a"])
    assert (config.alpha, config.correction, config.drift_share) == (0.01, "benjamini_hochberg", 0.3)
    assert config.sentinels == [-999.0, "n/a"]
    with pytest.raises(OfflineError, match="alpha"):
        drift_config(alpha=2)


def test_empty_current_data_is_one_empty_chunk(files, profile_file, tmp_path, main):
    empty = write_csv(tmp_path / "empty.csv", [])
    report = run_json(main, "--reference", profile_file, "--current", empty, *ROLE_ARGS)
    check_contract(report)
    assert [c["rows"] for c in report["chunks"]] == [0]
    assert report["chunks"][0]["drift"]["detected"] is False


@pytest.mark.parametrize("args, message", [
    (["analyze", "--reference", "{dir}/absent.csv", "--current", "{current}"], "absent.csv: no such file"),
    (["analyze", "--reference", "{reference}", "--current", "{dir}/absent.csv"], "absent.csv: no such file"),
    (["analyze", "--reference", "{dir}/absent.vigilprofile", "--current", "{current}"], "no such file"),
    (["analyze", "--reference", "{reference}", "--current", "{current}", "--features", "age,height"],
     "unknown column 'height' in --features"),
    (["analyze", "--reference", "{reference}", "--current", "{current}", "--prediction", "yhat"],
     "unknown column 'yhat' in --prediction"),
    (["profile", "build", "{ragged}", "-o", "{dir}/x.vigilprofile"], "ragged.csv: line 3: 2 fields, the header has 3"),
    (["analyze", "--reference", "{reference}", "--current", "{ragged}", "--features", "age"],
     "unknown column 'age': "),
    (["analyze", "--reference", "{reference}", "--current", "{current}", "--alpha", "1.5"], "--alpha"),
    (["profile", "build", "{reference}", "--prediction", "pred", "--label", "pred", "-o", "{dir}/x.pb"],
     "column 'pred' is given to both --prediction and --label"),
    (["profile", "build", "{dir}/absent.csv", "-o", "{dir}/x.vigilprofile"], "absent.csv: no such file"),
    (["profile", "build", "{reference}", "--features", "height", "-o", "{dir}/x.vigilprofile"],
     "unknown column 'height'"),
    (["profile", "show", "{reference}"], "not a Vigil profile"),
])
def test_errors_exit_non_zero_with_a_message(files, args, message, main):
    names = {"dir": files["dir"], "current": files["current"], "reference": files["reference"],
             "ragged": TESTDATA / "ragged.csv"}
    result = main(*(a.format(**names) for a in args))
    assert result.returncode == 1
    assert message in result.stderr and result.stderr.startswith("vigil: error:")
    assert "Traceback" not in result.stderr


def test_missing_file_through_the_real_command(files):
    result = vigil("analyze", "--reference", files["dir"] / "absent.csv", "--current", files["current"])
    assert result.returncode == 1
    assert result.stderr == f"vigil: error: {files['dir'] / 'absent.csv'}: no such file\n"


def test_current_data_lacking_a_reference_column(files, profile_file, tmp_path, main):
    path = tmp_path / "no_city.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["age", "income"])
        writer.writerows([[1, 2]] * 5)
    result = main("analyze", "--reference", profile_file, "--current", path)
    assert result.returncode == 1 and "unknown column 'city'" in result.stderr
