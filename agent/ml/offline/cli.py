"""The parser of `vigil profile build|show` and `vigil analyze`.

Built at every `vigil` start, so only the standard library is imported here: a command's module
(`agent.ml.offline.commands`, with numpy, scipy and protobuf) is imported when the command runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from typing import Callable

from agent.ml.offline.errors import OfflineError
from agent.ml.vocabulary import PREDICTION_CONFIDENCE, PREDICTION_LABEL, PREDICTION_SCORE, PREDICTION_VALUE

_OUTPUTS_HELP = ("Features are --features, or every column that is not given as a prediction, score, "
                 f"confidence, label, id or timestamp column. --prediction is stored as {PREDICTION_LABEL} "
                 f"when categorical, else {PREDICTION_VALUE}; --score as {PREDICTION_SCORE}; --confidence as "
                 f"{PREDICTION_CONFIDENCE}. Reports name them by their column names.")


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `vigil profile build|show` and `vigil analyze` on the `vigil` parser."""
    profile = subparsers.add_parser("profile", help="build or show a model's reference profile",
                                    description="Reference profiles (vigil.v1.Profile): what a model's "
                                    "inputs and outputs looked like, for drift and data health.")
    profile.set_defaults(func=lambda _: profile.print_help() or 2)
    actions = profile.add_subparsers(dest="profile_command", metavar="ACTION")

    build = actions.add_parser("build", help="build a profile from training data (CSV or Parquet)",
                               description="Build a reference profile from a data file. " + _OUTPUTS_HELP)
    build.add_argument("data", metavar="DATA", help="CSV (.csv, .tsv) or Parquet (.parquet, needs pyarrow) file")
    build.add_argument("-o", "--output", required=True, metavar="OUT", help="profile file to write "
                       "(e.g. model.vigilprofile)")
    build.add_argument("--model", help="model name (default: the data file's name without extension)")
    build.add_argument("--version", default="", help="model version")
    _column_arguments(build)
    _profile_arguments(build)
    _threads_argument(build)
    build.add_argument("--multivariate", choices=("mmd", "reconstruction", "all"),
                       help="also keep what `vigil analyze --multivariate` needs: the fit of mmd, of reconstruction "
                       "or of both, on the --embedding column, else on the numeric features jointly (default: none)")
    build.add_argument("--sentinel", action="append", metavar="VALUE",
                       help="a value that stands for missing, left out of the distributions "
                       "(repeatable; default -999)")
    build.set_defaults(func=_command("build"))

    show = actions.add_parser("show", help="print a profile")
    show.add_argument("file", metavar="FILE", help="profile file")
    show.add_argument("--format", choices=("table", "json"), default="table")
    show.set_defaults(func=_command("show"))

    analyze_ = subparsers.add_parser(
        "analyze", help="drift and data health of a data file against a reference",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=_paragraphs(
            "Drift and data health of CUR against REF, per chunk of rows, with the statistics engine the ml "
            "processor runs.",
            "Exit status 0 whether or not drift is found; 1 for a missing or unreadable file or an unknown "
            "column.",
            _OUTPUTS_HELP + " With a profile as REF, --prediction/--score/--confidence name the current data's "
            "columns for the stored outputs; an output without one is looked up under its stored name."))
    analyze_.add_argument("--reference", required=True, metavar="REF",
                          help="reference: a profile (.vigilprofile, .pb) or a data file (.csv, .tsv, .parquet)")
    analyze_.add_argument("--current", required=True, metavar="CUR", help="current data (.csv, .tsv, .parquet)")
    _column_arguments(analyze_)
    analyze_.add_argument("--current-labels", metavar="FILE",
                          help="ground truth for CUR in its own file (.csv, .tsv, .parquet): its --label column, "
                          "joined to CUR on --id-column (the first label of a repeated id counts)")
    analyze_.add_argument("--chunk-size", type=_positive_int, metavar="N",
                          help="analyse CUR in chunks of N rows (the last may be smaller; default: one chunk)")
    drift_options = analyze_.add_argument_group("drift decision (DriftConfig)")
    drift_options.add_argument("--alpha", type=float, help="family significance level (default 0.05)")
    drift_options.add_argument("--correction", choices=("bonferroni", "benjamini_hochberg"),
                               help="multiple-testing correction across a chunk's columns (default bonferroni)")
    drift_options.add_argument("--drift-share", type=float, metavar="SHARE",
                               help="share of drifted columns at which the chunk counts as drifted (default 0.5)")
    drift_options.add_argument("--multivariate", choices=("mmd", "reconstruction"),
                               help="also test each chunk's rows taken together: on the --embedding column, else on "
                               "the numeric features jointly (mmd: maximum mean discrepancy, permutation p-value; "
                               "reconstruction: PCA reconstruction error); drifted at p < 0.005 with the effect over "
                               "its floor")
    drift_options.add_argument("--sentinel", action="append", metavar="VALUE",
                               help="a value that stands for missing (repeatable; default -999); "
                               "numbers match numbers, anything else matches text")
    performance_options = analyze_.add_argument_group("performance (with a reference that has labels)")
    performance_options.add_argument("--sigma", type=float, default=3.0,
                                     help="a chunk is degraded when a metric is more than SIGMA standard deviations "
                                     "of its spread on reference windows worse than on the reference (default 3)")
    reference_options = analyze_.add_argument_group("reference built from a data file (ignored for a profile)")
    _profile_arguments(reference_options)
    _threads_argument(analyze_)
    analyze_.add_argument("--format", choices=("table", "json", "html"), default="table",
                          help="table for people; json: a stable contract, with p_value the corrected "
                          "p-value the decision used (null when the column was not tested) and null for "
                          "any non-finite number; html: one self-contained page (no scripts, works offline) "
                          "with the summary, charts and tables, to open or share (with -o report.html)")
    analyze_.add_argument("-o", "--output", metavar="FILE", help="write the report to FILE instead of stdout")
    analyze_.set_defaults(func=_command("analyze"))


def _paragraphs(*texts: str) -> str:
    return "\n\n".join(textwrap.fill(text, 78) for text in texts)


def _column_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--features", action="append", metavar="A,B,…",
                        help="feature columns (comma-separated, repeatable; default: every column without a role)")
    parser.add_argument("--categorical", action="append", default=[], metavar="A,B,…",
                        help="treat these columns as categorical")
    parser.add_argument("--numeric", action="append", default=[], metavar="A,B,…",
                        help="treat these columns as numeric")
    parser.add_argument("--prediction", metavar="COL", help="the model's prediction (class or value)")
    outputs = parser.add_mutually_exclusive_group()
    outputs.add_argument("--score", metavar="COL", help="the model's score")
    outputs.add_argument("--confidence", metavar="COL", help="the model's top-class probability (0-1)")
    parser.add_argument("--label", metavar="COL", help="ground truth (not a feature; not drift-tested)")
    parser.add_argument("--id-column", metavar="COL", help="row id (not a feature)")
    parser.add_argument("--timestamp-column", metavar="COL", help="row time (not a feature)")
    parser.add_argument("--embedding", metavar="COL", help="a column holding an embedding per row (a JSON list of "
                        "numbers in CSV, list<double> in Parquet; not a feature), for --multivariate")


def _profile_arguments(parser) -> None:
    parser.add_argument("--bins", type=_positive_int, metavar="N", help="quantile bins per numeric column "
                        "(default 10)")
    parser.add_argument("--reservoir", type=_positive_int, metavar="N", help="sample size kept per numeric "
                        "column for the two-sample tests (default 10000)")
    parser.add_argument("--calibration", choices=("isotonic", "binned"), default="isotonic",
                        help="with --label: how the score (or confidence) is calibrated on the labels; the map is "
                        "used only when it beats the raw scores on held-out folds (default isotonic)")
    parser.add_argument("--positive-class", metavar="CLASS", help="with --label and --score: the class the score "
                        "is the probability of (default: inferred, the class with the higher scores)")
    parser.add_argument("--window-rows", type=_positive_int, metavar="N", help="with --label: the window size the "
                        "spread of the metrics (the alert bounds) is measured on (default 1000; for vigil analyze, "
                        "the chunk size)")
    parser.add_argument("--multivariate-sample", type=_positive_int, metavar="N", help="with --multivariate mmd: "
                        "reference rows kept for the test (default 2000)")


def _threads_argument(parser) -> None:
    parser.add_argument("--threads", type=_positive_int, metavar="N", help="threads working on the columns of "
                        "a large table at once (default: one per core, at most 8; the results are the same)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def _command(name: str) -> Callable[[argparse.Namespace], int]:
    """The command `name` of `agent.ml.offline.commands`, imported when it runs; an OfflineError is a
    one-line message on stderr and exit status 1."""
    def run(args: argparse.Namespace) -> int:
        try:
            from agent.ml.offline.memory import prefer_small_pages, reuse_freed_memory

            prefer_small_pages()  # before numpy is imported
            from agent.ml import parallel
            from agent.ml.offline import commands  # numpy, scipy, protobuf: only for a command that runs

            reuse_freed_memory()  # a batch command: freed chunks' memory is better reused than handed back
            if getattr(args, "threads", None):
                parallel.set_threads(args.threads)
            return getattr(commands, name)(args)
        except OfflineError as exc:
            print(f"vigil: error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("vigil: interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:  # `vigil analyze … | head`: the reader left; leave quietly, as on SIGPIPE
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 141
    return run
