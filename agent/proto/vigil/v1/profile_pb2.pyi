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
COLUMN_KIND_UNSPECIFIED: ColumnKind
COLUMN_KIND_NUMERIC: ColumnKind
COLUMN_KIND_CATEGORICAL: ColumnKind
VALUE_TYPE_UNSPECIFIED: ValueType
VALUE_TYPE_NUMBER: ValueType
VALUE_TYPE_STRING: ValueType

class Profile(_message.Message):
    __slots__ = ("model_name", "model_version", "created_time_unix_nano", "rows", "source", "features", "predictions")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    model_version: str
    created_time_unix_nano: int
    rows: int
    source: str
    features: _containers.RepeatedCompositeFieldContainer[ColumnProfile]
    predictions: _containers.RepeatedCompositeFieldContainer[ColumnProfile]
    def __init__(self, model_name: _Optional[str] = ..., model_version: _Optional[str] = ..., created_time_unix_nano: _Optional[int] = ..., rows: _Optional[int] = ..., source: _Optional[str] = ..., features: _Optional[_Iterable[_Union[ColumnProfile, _Mapping]]] = ..., predictions: _Optional[_Iterable[_Union[ColumnProfile, _Mapping]]] = ...) -> None: ...

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
