from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ColumnKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COLUMN_KIND_UNSPECIFIED: _ClassVar[ColumnKind]
    COLUMN_KIND_NUMERIC: _ClassVar[ColumnKind]
    COLUMN_KIND_CATEGORICAL: _ClassVar[ColumnKind]

class ValueType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VALUE_TYPE_UNSPECIFIED: _ClassVar[ValueType]
    VALUE_TYPE_NUMBER: _ClassVar[ValueType]
    VALUE_TYPE_STRING: _ClassVar[ValueType]

class ProblemType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROBLEM_TYPE_UNSPECIFIED: _ClassVar[ProblemType]
    PROBLEM_TYPE_BINARY: _ClassVar[ProblemType]
    PROBLEM_TYPE_MULTICLASS: _ClassVar[ProblemType]
    PROBLEM_TYPE_REGRESSION: _ClassVar[ProblemType]

class CalibrationMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CALIBRATION_METHOD_UNSPECIFIED: _ClassVar[CalibrationMethod]
    CALIBRATION_METHOD_ISOTONIC: _ClassVar[CalibrationMethod]
    CALIBRATION_METHOD_BINNED: _ClassVar[CalibrationMethod]
COLUMN_KIND_UNSPECIFIED: ColumnKind
COLUMN_KIND_NUMERIC: ColumnKind
COLUMN_KIND_CATEGORICAL: ColumnKind
VALUE_TYPE_UNSPECIFIED: ValueType
VALUE_TYPE_NUMBER: ValueType
VALUE_TYPE_STRING: ValueType
PROBLEM_TYPE_UNSPECIFIED: ProblemType
PROBLEM_TYPE_BINARY: ProblemType
PROBLEM_TYPE_MULTICLASS: ProblemType
PROBLEM_TYPE_REGRESSION: ProblemType
CALIBRATION_METHOD_UNSPECIFIED: CalibrationMethod
CALIBRATION_METHOD_ISOTONIC: CalibrationMethod
CALIBRATION_METHOD_BINNED: CalibrationMethod

class Profile(_message.Message):
    __slots__ = ("model_name", "model_version", "created_time_unix_nano", "rows", "source", "features", "predictions", "performance", "multivariate")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    PERFORMANCE_FIELD_NUMBER: _ClassVar[int]
    MULTIVARIATE_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    model_version: str
    created_time_unix_nano: int
    rows: int
    source: str
    features: _containers.RepeatedCompositeFieldContainer[ColumnProfile]
    predictions: _containers.RepeatedCompositeFieldContainer[ColumnProfile]
    performance: PerformanceProfile
    multivariate: _containers.RepeatedCompositeFieldContainer[MultivariateProfile]
    def __init__(self, model_name: _Optional[str] = ..., model_version: _Optional[str] = ..., created_time_unix_nano: _Optional[int] = ..., rows: _Optional[int] = ..., source: _Optional[str] = ..., features: _Optional[_Iterable[_Union[ColumnProfile, _Mapping]]] = ..., predictions: _Optional[_Iterable[_Union[ColumnProfile, _Mapping]]] = ..., performance: _Optional[_Union[PerformanceProfile, _Mapping]] = ..., multivariate: _Optional[_Iterable[_Union[MultivariateProfile, _Mapping]]] = ...) -> None: ...

class MultivariateProfile(_message.Message):
    __slots__ = ("columns", "embedding", "mean", "scale", "mmd", "reconstruction")
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    MMD_FIELD_NUMBER: _ClassVar[int]
    RECONSTRUCTION_FIELD_NUMBER: _ClassVar[int]
    columns: _containers.RepeatedScalarFieldContainer[str]
    embedding: str
    mean: _containers.RepeatedScalarFieldContainer[float]
    scale: _containers.RepeatedScalarFieldContainer[float]
    mmd: MmdProfile
    reconstruction: ReconstructionProfile
    def __init__(self, columns: _Optional[_Iterable[str]] = ..., embedding: _Optional[str] = ..., mean: _Optional[_Iterable[float]] = ..., scale: _Optional[_Iterable[float]] = ..., mmd: _Optional[_Union[MmdProfile, _Mapping]] = ..., reconstruction: _Optional[_Union[ReconstructionProfile, _Mapping]] = ...) -> None: ...

class MmdProfile(_message.Message):
    __slots__ = ("projected_dims", "projection", "sample_rows", "sample", "bandwidth", "margin")
    PROJECTED_DIMS_FIELD_NUMBER: _ClassVar[int]
    PROJECTION_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_ROWS_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    BANDWIDTH_FIELD_NUMBER: _ClassVar[int]
    MARGIN_FIELD_NUMBER: _ClassVar[int]
    projected_dims: int
    projection: _containers.RepeatedScalarFieldContainer[float]
    sample_rows: int
    sample: _containers.RepeatedScalarFieldContainer[float]
    bandwidth: float
    margin: float
    def __init__(self, projected_dims: _Optional[int] = ..., projection: _Optional[_Iterable[float]] = ..., sample_rows: _Optional[int] = ..., sample: _Optional[_Iterable[float]] = ..., bandwidth: _Optional[float] = ..., margin: _Optional[float] = ...) -> None: ...

class ReconstructionProfile(_message.Message):
    __slots__ = ("component_count", "components", "error_mean", "error_std", "rows")
    COMPONENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_MEAN_FIELD_NUMBER: _ClassVar[int]
    ERROR_STD_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    component_count: int
    components: _containers.RepeatedScalarFieldContainer[float]
    error_mean: float
    error_std: float
    rows: int
    def __init__(self, component_count: _Optional[int] = ..., components: _Optional[_Iterable[float]] = ..., error_mean: _Optional[float] = ..., error_std: _Optional[float] = ..., rows: _Optional[int] = ...) -> None: ...

class ColumnProfile(_message.Message):
    __slots__ = ("name", "kind", "value_type", "count", "missing", "numeric", "categorical")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    VALUE_TYPE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    NUMERIC_FIELD_NUMBER: _ClassVar[int]
    CATEGORICAL_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: ColumnKind
    value_type: ValueType
    count: int
    missing: int
    numeric: NumericProfile
    categorical: CategoricalProfile
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[_Union[ColumnKind, str]] = ..., value_type: _Optional[_Union[ValueType, str]] = ..., count: _Optional[int] = ..., missing: _Optional[int] = ..., numeric: _Optional[_Union[NumericProfile, _Mapping]] = ..., categorical: _Optional[_Union[CategoricalProfile, _Mapping]] = ...) -> None: ...

class NumericProfile(_message.Message):
    __slots__ = ("bin_edges", "bin_counts", "reservoir", "mean", "std", "min", "max", "count")
    BIN_EDGES_FIELD_NUMBER: _ClassVar[int]
    BIN_COUNTS_FIELD_NUMBER: _ClassVar[int]
    RESERVOIR_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    STD_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    bin_edges: _containers.RepeatedScalarFieldContainer[float]
    bin_counts: _containers.RepeatedScalarFieldContainer[int]
    reservoir: _containers.RepeatedScalarFieldContainer[float]
    mean: float
    std: float
    min: float
    max: float
    count: int
    def __init__(self, bin_edges: _Optional[_Iterable[float]] = ..., bin_counts: _Optional[_Iterable[int]] = ..., reservoir: _Optional[_Iterable[float]] = ..., mean: _Optional[float] = ..., std: _Optional[float] = ..., min: _Optional[float] = ..., max: _Optional[float] = ..., count: _Optional[int] = ...) -> None: ...

class CategoricalProfile(_message.Message):
    __slots__ = ("categories", "counts")
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    categories: _containers.RepeatedScalarFieldContainer[str]
    counts: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, categories: _Optional[_Iterable[str]] = ..., counts: _Optional[_Iterable[int]] = ...) -> None: ...

class PerformanceProfile(_message.Message):
    __slots__ = ("problem", "positive_class", "classes", "threshold", "calibration", "reference", "estimated", "estimated_std", "realized_std", "window_rows", "labeled_rows", "error_confusion")
    class ReferenceEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class EstimatedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class EstimatedStdEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class RealizedStdEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    POSITIVE_CLASS_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_STD_FIELD_NUMBER: _ClassVar[int]
    REALIZED_STD_FIELD_NUMBER: _ClassVar[int]
    WINDOW_ROWS_FIELD_NUMBER: _ClassVar[int]
    LABELED_ROWS_FIELD_NUMBER: _ClassVar[int]
    ERROR_CONFUSION_FIELD_NUMBER: _ClassVar[int]
    problem: ProblemType
    positive_class: str
    classes: _containers.RepeatedScalarFieldContainer[str]
    threshold: float
    calibration: Calibration
    reference: _containers.ScalarMap[str, float]
    estimated: _containers.ScalarMap[str, float]
    estimated_std: _containers.ScalarMap[str, float]
    realized_std: _containers.ScalarMap[str, float]
    window_rows: int
    labeled_rows: int
    error_confusion: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, problem: _Optional[_Union[ProblemType, str]] = ..., positive_class: _Optional[str] = ..., classes: _Optional[_Iterable[str]] = ..., threshold: _Optional[float] = ..., calibration: _Optional[_Union[Calibration, _Mapping]] = ..., reference: _Optional[_Mapping[str, float]] = ..., estimated: _Optional[_Mapping[str, float]] = ..., estimated_std: _Optional[_Mapping[str, float]] = ..., realized_std: _Optional[_Mapping[str, float]] = ..., window_rows: _Optional[int] = ..., labeled_rows: _Optional[int] = ..., error_confusion: _Optional[_Iterable[float]] = ...) -> None: ...

class Calibration(_message.Message):
    __slots__ = ("method", "x", "y", "brier_raw", "brier_calibrated", "folds", "applied")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    BRIER_RAW_FIELD_NUMBER: _ClassVar[int]
    BRIER_CALIBRATED_FIELD_NUMBER: _ClassVar[int]
    FOLDS_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    method: CalibrationMethod
    x: _containers.RepeatedScalarFieldContainer[float]
    y: _containers.RepeatedScalarFieldContainer[float]
    brier_raw: float
    brier_calibrated: float
    folds: int
    applied: bool
    def __init__(self, method: _Optional[_Union[CalibrationMethod, str]] = ..., x: _Optional[_Iterable[float]] = ..., y: _Optional[_Iterable[float]] = ..., brier_raw: _Optional[float] = ..., brier_calibrated: _Optional[float] = ..., folds: _Optional[int] = ..., applied: _Optional[bool] = ...) -> None: ...
