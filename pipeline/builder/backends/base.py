"""What a landmark or AU backend adds to a build (the registry is the package, `pipeline.builder.backends`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline.builder.step import Step
from pipeline.models.files import ModelFile


@dataclass(frozen=True)
class Backend:
    version: str  # the rows' `detector` (landmark backends) or `au_model` (AU backends)
    models: dict[str, ModelFile] = field(default_factory=dict)  # the files it loads, for the manifest
    steps: list[Step] = field(default_factory=list)  # what it adds to the image work, in the order they run
    intensity_scale: str = ""  # AU backends: the meaning of au_intensity's 0-5
    head: dict[str, Any] | None = None  # AU backends that apply the AU head: its summary (manifest, card)
    not_measured: list[str] = field(default_factory=list)  # AU backends: vocabulary AUs it always gives 0
