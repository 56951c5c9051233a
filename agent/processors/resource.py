"""The `resource` processor: insert, update, upsert or delete resource attributes.

Its config is the Collector's: a list of actions applied in order to every
resource in the batch.

    resource:
      attributes:
        - {key: deployment.environment, value: production, action: upsert}
        - {key: k8s.pod.uid, action: delete}
"""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from agent import attributes
from agent.component import Consumer, Factory, Kind, Settings
from agent.configmodel import StrictModel
from agent.signals import Batch, Signal


class AttributeAction(StrictModel):
    key: str
    action: Literal["insert", "update", "upsert", "delete"]
    value: str | bool | int | float | None = None
    from_attribute: str | None = None

    @model_validator(mode="after")
    def _check(self) -> AttributeAction:
        has_source = self.value is not None or self.from_attribute is not None
        if self.action == "delete" and has_source:
            raise ValueError("delete takes no value or from_attribute")
        if self.action != "delete" and not has_source:
            raise ValueError(f"{self.action} needs a value or from_attribute")
        if self.value is not None and self.from_attribute is not None:
            raise ValueError("set value or from_attribute, not both")
        return self


class ResourceProcessorConfig(StrictModel):
    attributes: list[AttributeAction]


class ResourceProcessor:
    mutates_data = True

    def __init__(self, config: ResourceProcessorConfig, next: Consumer) -> None:
        self._actions = config.attributes
        self._next = next

    async def start(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    async def consume(self, batch: Batch) -> None:
        batch.edit(same_items=True)
        for resource in batch.resources():
            self._apply(resource.resource.attributes)
        await self._next.consume(batch)

    def _apply(self, attrs) -> None:
        for action in self._actions:
            existing = attributes.find(attrs, action.key)
            if action.action == "delete":
                if existing is not None:
                    attrs.remove(existing)
                continue
            if (action.action == "insert" and existing is not None) or (
                    action.action == "update" and existing is None):
                continue
            if action.from_attribute is not None:
                source = attributes.find(attrs, action.from_attribute)
                if source is None:
                    continue
                value = source.value
            else:
                value = None
            target = existing if existing is not None else attrs.add(key=action.key)
            if value is not None:
                target.value.CopyFrom(value)
            else:
                target.value.Clear()
                attributes.set_any_value(target.value, action.value)


def _create(config: ResourceProcessorConfig, settings: Settings, signal: Signal, next: Consumer):
    return ResourceProcessor(config, next)


FACTORY = Factory(
    kind=Kind.PROCESSOR,
    type="resource",
    config_model=ResourceProcessorConfig,
    create=_create,
    signals=frozenset(Signal),
    description="insert, update, upsert or delete resource attributes",
)
