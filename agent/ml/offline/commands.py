"""What `vigil profile build`, `vigil profile show` and `vigil analyze` do with their parsed arguments
(the parser is `agent.ml.offline.cli`): read the files, build or analyse, write the report.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import Any, Sequence

from pydantic import ValidationError

from agent.ml import multivariate as mv, parallel, profile as profiles
from agent.ml.config import DriftConfig
from agent.ml.offline import report
from agent.ml.offline.analysis import Multivariate, analyze_chunk
from agent.ml.offline.errors import OfflineError, listing, unknown
from agent.ml.offline.files import LabelFile, is_profile_file, load_profile, open_data, read_blocks
from agent.ml.offline.reference import Roles, build_profile, reference_view
from agent.statefile import write_atomic


def build(args: argparse.Namespace) -> int:
    methods = mv.METHODS if args.multivariate == "all" else tuple(filter(None, [args.multivariate]))
    if args.embedding and not methods:
        raise OfflineError("--embedding is read by the multivariate methods: give --multivariate mmd, "
                           "reconstruction or all")
    data = open_data(args.data)
    table = next(_read_blocks(data, data.columns, args.embedding))
    if table.rows == 0:
        raise OfflineError(f"{args.data}: no data rows")
    profile = build_profile(table, columns=data.columns, model=args.model or Path(args.data).stem,
                            version=args.version, features=_names(args.features),
                            categorical=_names(args.categorical), numeric=_names(args.numeric),
                            roles=_roles(args), bins=args.bins, reservoir=args.reservoir,
                            source=f"file:{args.data}", sentinels=_sentinels(args.sentinel),
                            calibration=args.calibration, positive_class=args.positive_class,
                            window_rows=args.window_rows, multivariate=methods,
                            multivariate_sample=args.multivariate_sample)
    try:
        profiles.save(profile, args.output)
    except OSError as exc:
        raise OfflineError(f"{args.output}: cannot write ({exc.strerror or exc})") from None
    print(f"{args.output}: profile of {profile.model_name!r} from {profile.rows} rows: "
          f"{_count(len(profile.features), 'feature')}, {_count(len(profile.predictions), 'prediction output')}"
          + (f" ({', '.join(profile.predictions)})" if profile.predictions else ""), file=sys.stderr)
    for fit in profile.multivariate:
        print(f"  multivariate: {', '.join(m for m in mv.METHODS if getattr(fit, m) is not None)} on "
              f"{fit.input_name} ({fit.dims} dimensions)", file=sys.stderr)
    if args.label and profile.performance is None:
        _warn(f"--label {args.label}: no performance kept (it needs a prediction output: --prediction, "
              "--score or --confidence, and rows with both a label and a prediction)")
    elif profile.performance is not None:
        print("  " + report.performance_line(profile.performance), file=sys.stderr)
    return 0


def show(args: argparse.Namespace) -> int:
    profile = load_profile(args.file)
    if args.format == "json":
        sys.stdout.write(json.dumps(report.profile_to_dict(profile), indent=2, allow_nan=False) + "\n")
    else:
        sys.stdout.write(report.format_profile(profile))
    return 0


def analyze(args: argparse.Namespace) -> int:
    config = drift_config(args.alpha, args.correction, args.drift_share, args.sentinel)
    if not args.sigma > 0:
        raise OfflineError(f"--sigma: must be > 0, not {args.sigma}")
    roles = _roles(args)
    roles.check_distinct()
    if args.embedding and not args.multivariate:
        raise OfflineError("--embedding is read by the multivariate methods: give --multivariate mmd or reconstruction")
    current = open_data(args.current)
    if args.embedding and args.embedding not in current.columns:
        raise OfflineError(f"{unknown([args.embedding])} in --embedding: {args.current} has columns "
                           f"{listing(current.columns)}")
    features = _names(args.features)
    labels = None
    if args.current_labels:
        if not args.label or not args.id_column:
            raise OfflineError("--current-labels needs --label (its label column) and --id-column (the id both "
                               "files share)")
        if args.id_column not in current.columns:
            raise OfflineError(f"{unknown([args.id_column])} in --id-column: {args.current} has columns "
                               f"{listing(current.columns)}")
        labels = LabelFile.read(args.current_labels, args.id_column, args.label)
    elif args.label and args.label not in current.columns:
        raise OfflineError(f"{unknown([args.label])} in --label: {args.current} has columns "
                           f"{listing(current.columns)} (or give the labels with --current-labels FILE)")
    profile, where, loss = _reference_profile(args, roles, features, config)
    reference = reference_view(profile, current.columns, features=features, roles=roles, where=where,
                               current=args.current)
    for warning in reference.warnings:
        _warn(warning)
    multivariate = _multivariate(reference.profile, args, where) if args.multivariate else None
    methods = {name: (config.numeric_method if c.kind == profiles.NUMERIC else config.categorical_method)
               for name, c in reference.profile.columns().items()}
    extra = [c for c in ((args.id_column if labels else None), (args.label if not labels else None))
             if c and c not in reference.columns]
    # The next chunk is read while one is analysed.
    chunks = parallel.read_ahead(_read_blocks(current, [*reference.columns, *dict.fromkeys(extra)], args.embedding,
                                              args.chunk_size))
    # A table on stdout is printed chunk by chunk; JSON, and any report written to a file, at the end.
    stream_table = args.format == "table" and not args.output
    result: dict[str, Any] = {"reference_rows": int(reference.profile.rows), "chunks": []}
    start = 0
    if stream_table:
        sys.stdout.write(report.report_header(args.reference, result["reference_rows"], args.current))
    matched = 0
    distributions: list | None = None
    if args.format == "html":
        from agent.ml.offline import report_html  # the status page's charts: agent.admin, only when asked for

        distributions = []
    for index, table in enumerate(chunks):
        truth = None
        if labels is not None:
            truth = labels.join(table.columns[args.id_column])
            matched += int((~truth.is_missing).sum())
        elif args.label:
            truth = table.columns[args.label]
        chunk = analyze_chunk(reference.profile, table, config, index, slots=reference.slots, truth=truth,
                              sigma=args.sigma, multivariate=multivariate, loss=loss)
        result["chunks"].append(chunk)
        if distributions is not None:  # while the chunk's rows are at hand: the drifted columns' charts
            distributions.append(report_html.chunk_distributions(reference.profile, table, chunk, config.sentinels))
        if stream_table:
            sys.stdout.write("\n" + report.format_chunk(chunk, start, methods, config.drift_share))
            sys.stdout.flush()
        start += table.rows
    if labels is not None:
        result["labels"] = {"file": str(args.current_labels), "rows": labels.rows, "ids": len(labels.index),
                            "duplicates": labels.duplicates, "matched": matched}
        if stream_table:
            sys.stdout.write(f"\nlabels: {args.current_labels}: {labels.rows} rows, {matched} joined to a "
                             f"row of {args.current}" + (f", {labels.duplicates} repeated ids (the first "
                                                         "label kept)" if labels.duplicates else "") + "\n")
    if stream_table:
        sys.stdout.write("\n" + report.TABLE_LEGEND)
        return 0
    if args.format == "html":
        text = report_html.render(result, args.reference, args.current, distributions or [], methods,
                                  config.drift_share)
    elif args.format == "json":
        text = report.to_json(result)
    else:
        text = report.format_report(result, args.reference, args.current, methods, config.drift_share)
    if args.output:
        _write(args.output, text)
    else:
        sys.stdout.write(text)
    return 0


def _reference_profile(args: argparse.Namespace, roles: Roles, features: list[str],
                       config: DriftConfig) -> tuple[profiles.Profile, str, Any]:
    """The reference of `vigil analyze`: its profile file, or a profile built from its data file; how
    messages name it; and a regression model's loss models (`agent.ml.estimates`; None unless the
    reference is a labelled data file)."""
    if is_profile_file(args.reference):
        profile = load_profile(args.reference)
        ignored = [o for o, v in (("--categorical", args.categorical), ("--numeric", args.numeric),
                                  ("--bins", args.bins), ("--reservoir", args.reservoir),
                                  ("--positive-class", args.positive_class), ("--window-rows", args.window_rows),
                                  ("--multivariate-sample", args.multivariate_sample))
                   if v]
        if ignored:
            _warn(f"{', '.join(ignored)} ignored: the reference is a profile")
        return profile, f"profile {args.reference}", None
    data = open_data(args.reference)
    if args.embedding and args.embedding not in data.columns:
        raise OfflineError(f"{unknown([args.embedding])} in --embedding: {args.reference} has columns "
                           f"{listing(data.columns)}")
    table = next(_read_blocks(data, data.columns, args.embedding))
    if table.rows == 0:
        raise OfflineError(f"{args.reference}: no data rows")
    reference_roles = roles
    if roles.label and roles.label not in data.columns:
        _warn(f"{args.reference} has no {roles.label!r} column: no performance estimate, realised metrics only")
        reference_roles = dataclasses.replace(roles, label=None)
    profile = build_profile(table, columns=data.columns, model=Path(args.reference).stem,
                            features=features, categorical=_names(args.categorical),
                            numeric=_names(args.numeric), roles=reference_roles, bins=args.bins,
                            reservoir=args.reservoir, source=f"file:{args.reference}",
                            sentinels=config.sentinels, calibration=args.calibration,
                            positive_class=args.positive_class,
                            window_rows=args.window_rows or args.chunk_size,
                            multivariate=tuple(filter(None, [args.multivariate])),
                            multivariate_sample=args.multivariate_sample)
    return profile, args.reference, _loss_models(profile, table, reference_roles)


def _loss_models(profile: profiles.Profile, table, roles: Roles):
    """A labelled regression reference's loss models, for the estimated MAE and RMSE."""
    perf = profile.performance
    if perf is None or perf.problem != "regression" or not roles.label or not roles.prediction:
        return None
    try:
        from agent.ml import estimates
        return estimates.fit_loss({n: table.columns[n] for n in profile.features},
                                  table.columns[roles.prediction].numbers, table.columns[roles.label].numbers)
    except ImportError:
        _warn("no estimated MAE and RMSE: direct loss estimation needs scikit-learn (pip install scikit-learn)")
    except ValueError as exc:
        _warn(f"no estimated MAE and RMSE: {exc}")
    return None


def _read_blocks(data, names: Sequence[str], embedding: str | None, chunk_rows: int | None = None):
    """`read_blocks`, with the embedding column read as vectors (and not as a column)."""
    vectors = [embedding] if embedding else []
    return read_blocks(data, [n for n in names if n not in vectors], chunk_rows, vectors)


def _multivariate(profile: profiles.Profile, args: argparse.Namespace, where: str) -> Multivariate:
    """The method `--multivariate` names, with its fit from the reference (on `--embedding`, else the features)."""
    method, embedding = args.multivariate, args.embedding or ""
    fit = next((m for m in profile.multivariate if m.embedding == embedding), None)
    input_name = f"the embedding {embedding!r}" if embedding else "the numeric features"
    if fit is None or getattr(fit, method) is None:
        has = "; ".join(f"{', '.join(m for m in mv.METHODS if getattr(f, m) is not None)} on {f.input_name}"
                        for f in profile.multivariate) or "none"
        option = f" --embedding {embedding}" if embedding else ""
        raise OfflineError(f"--multivariate {method}: {where} has no {method} fit on {input_name} (it has: {has}); "
                           f"build it with `vigil profile build --multivariate {method}{option}`")
    if not embedding:
        missing = [c for c in fit.columns if c not in profile.features]
        if missing:
            raise OfflineError(f"--multivariate {method}: the fit of {where} covers the features "
                               f"{listing(fit.columns)}; {unknown(missing)} not analysed (--features)")
    return Multivariate(method, fit)


def drift_config(alpha: float | None = None, correction: str | None = None, drift_share: float | None = None,
                 sentinels: Sequence[str] | None = None) -> DriftConfig:
    """A DriftConfig from command-line values (None: the default)."""
    values: dict[str, Any] = {"alpha": alpha, "correction": correction, "drift_share": drift_share}
    values = {k: v for k, v in values.items() if v is not None}
    if sentinels is not None:
        values["sentinels"] = [_sentinel(s) for s in sentinels]
    try:
        return DriftConfig(**values)
    except ValidationError as exc:
        problems = "; ".join(f"--{'-'.join(str(p) for p in e['loc']).replace('_', '-')}: {e['msg']}"
                             for e in exc.errors())
        raise OfflineError(problems) from None


def _names(values: Sequence[str] | None) -> list[str]:
    """`--features a,b --features c` → [a, b, c]."""
    names = [name.strip() for value in values or () for name in value.split(",")]
    return list(dict.fromkeys(n for n in names if n))


def _roles(args: argparse.Namespace) -> Roles:
    return Roles(args.prediction, args.score, args.confidence, args.label, args.id_column, args.timestamp_column,
                 args.embedding)


def _sentinels(texts: Sequence[str] | None) -> list[float | str]:
    return [-999] if texts is None else [_sentinel(t) for t in texts]


def _sentinel(text: str) -> float | str:
    try:
        value = float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) else text


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _write(path: str, text: str) -> None:
    try:
        write_atomic(path, text)
    except OSError as exc:
        raise OfflineError(f"{path}: cannot write ({exc.strerror or exc})") from None


def _warn(message: str) -> None:
    print(f"vigil: warning: {message}", file=sys.stderr)
