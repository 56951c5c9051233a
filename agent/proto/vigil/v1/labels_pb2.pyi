from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LabelJoinState(_message.Message):
    __slots__ = ("saved_time_unix_nano", "names", "pending", "waiting", "closed")
    SAVED_TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    WAITING_FIELD_NUMBER: _ClassVar[int]
    CLOSED_FIELD_NUMBER: _ClassVar[int]
    saved_time_unix_nano: int
    names: _containers.RepeatedScalarFieldContainer[str]
    pending: PendingPredictions
    waiting: WaitingLabels
    closed: ClosedIds
    def __init__(self, saved_time_unix_nano: _Optional[int] = ..., names: _Optional[_Iterable[str]] = ..., pending: _Optional[_Union[PendingPredictions, _Mapping]] = ..., waiting: _Optional[_Union[WaitingLabels, _Mapping]] = ..., closed: _Optional[_Union[ClosedIds, _Mapping]] = ...) -> None: ...

class PendingPredictions(_message.Message):
    __slots__ = ("model", "version", "id", "predicted", "has_predicted", "score", "value", "time")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_FIELD_NUMBER: _ClassVar[int]
    HAS_PREDICTED_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    model: _containers.RepeatedScalarFieldContainer[int]
    version: _containers.RepeatedScalarFieldContainer[int]
    id: _containers.RepeatedScalarFieldContainer[str]
    predicted: _containers.RepeatedScalarFieldContainer[str]
    has_predicted: _containers.RepeatedScalarFieldContainer[bool]
    score: _containers.RepeatedScalarFieldContainer[float]
    value: _containers.RepeatedScalarFieldContainer[float]
    time: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, model: _Optional[_Iterable[int]] = ..., version: _Optional[_Iterable[int]] = ..., id: _Optional[_Iterable[str]] = ..., predicted: _Optional[_Iterable[str]] = ..., has_predicted: _Optional[_Iterable[bool]] = ..., score: _Optional[_Iterable[float]] = ..., value: _Optional[_Iterable[float]] = ..., time: _Optional[_Iterable[float]] = ...) -> None: ...

class WaitingLabels(_message.Message):
    __slots__ = ("model", "id", "label_string", "label_number", "label_is_number", "time")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_STRING_FIELD_NUMBER: _ClassVar[int]
    LABEL_NUMBER_FIELD_NUMBER: _ClassVar[int]
    LABEL_IS_NUMBER_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    model: _containers.RepeatedScalarFieldContainer[int]
    id: _containers.RepeatedScalarFieldContainer[str]
    label_string: _containers.RepeatedScalarFieldContainer[str]
    label_number: _containers.RepeatedScalarFieldContainer[float]
    label_is_number: _containers.RepeatedScalarFieldContainer[bool]
    time: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, model: _Optional[_Iterable[int]] = ..., id: _Optional[_Iterable[str]] = ..., label_string: _Optional[_Iterable[str]] = ..., label_number: _Optional[_Iterable[float]] = ..., label_is_number: _Optional[_Iterable[bool]] = ..., time: _Optional[_Iterable[float]] = ...) -> None: ...

class ClosedIds(_message.Message):
    __slots__ = ("model", "id", "matched", "time")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    MATCHED_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    model: _containers.RepeatedScalarFieldContainer[int]
    id: _containers.RepeatedScalarFieldContainer[str]
    matched: _containers.RepeatedScalarFieldContainer[bool]
    time: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, model: _Optional[_Iterable[int]] = ..., id: _Optional[_Iterable[str]] = ..., matched: _Optional[_Iterable[bool]] = ..., time: _Optional[_Iterable[float]] = ...) -> None: ...
