"""params.yaml -> one typed, validated config object.

Every knob of a build lives here; stages receive only their own section. Unknown keys are errors,
so a typo in params.yaml fails at start-up instead of being silently ignored.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from pipeline.domain.data import PROJECT_ROOT
from pipeline.io import storage

DEFAULT_PARAMS = PROJECT_ROOT / "params.yaml"


@dataclass(frozen=True)
class Paths:
    """Every file and folder a build reads or writes, resolved once (`Config.paths`): local paths absolute,
    URLs as UPaths. Knowledge, plan, backends, sources and the end of a build take their locations from here."""

    au_vocabulary: Path
    au_measures: Path
    au_head: Path
    au_pyfeat_mapping: Path
    prototypes: Path
    templates_dir: Path
    llm_prompts: Path
    llm_cache_dir: Path
    output_dir: Path
    validation_suite: Path
    sources: tuple[Path | None, ...]  # per `Config.sources` entry, None for one without a folder


class ConfigError(ValueError):
    """params.yaml or an override is invalid; the message is meant for the user."""


def local_output_path(target: str) -> str:
    """`target` unchanged when it names a local path; a ConfigError for a URL (`s3://`, any `scheme://`), for
    what only a local folder can hold (the LLM response cache, exports, reports): written as a path, a URL
    would make a local folder named `s3:`."""
    name = storage.scheme(target)
    if name:
        raise ConfigError(f"cannot write to {target}: this output must be a local folder ({name}:// URLs are "
                          "supported for build outputs, output.dir)")
    return target


def output_location(target: str) -> str:
    """Where a build is written: a local path (a `file://` URL as its path), or the URL of a store whose
    filesystems (fsspec's and Beam's) are installed; a ConfigError saying what to install otherwise."""
    try:
        storage.check_store(target, for_beam=True)
    except storage.StorageError as exc:
        raise ConfigError(str(exc)) from None
    return storage.local_path(target)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceConfig(Section):
    """One source corpus. `kind` picks the adapter; `options` are the adapter's own settings."""

    name: str
    kind: str
    path: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    limit: int | None = Field(default=None, ge=1, description="read at most this many items")
    weight: float = Field(
        default=1.0, gt=0, le=1,
        description="sampling weight: the share of this source's entries read, chosen by a seeded hash of "
        "each entry's id (deterministic; entries left out are not inputs of the build)")


class RunnerConfig(Section):
    runner: str = "DirectRunner"
    direct_running_mode: Literal["in_memory", "multi_processing", "multi_threading"] = "multi_processing"
    num_workers: int = Field(default=2, ge=1)
    pin_cpus: bool = Field(default=True, description="each worker's face model on a CPU core of its own "
                           "(Linux; skipped when every core is taken)")
    extra_options: list[str] = Field(default_factory=list, description="passed to Beam PipelineOptions")
    shard_size: int = Field(default=50, ge=1, description="inputs per shard of image work: a shard is the unit a "
                            "worker takes and the unit a rerun after a crash skips once it is finished")
    resume: bool = Field(default=True, description="reuse the finished shards of an earlier, interrupted build "
                         "of the same params and inputs (false: start the image work afresh)")


class DecodeConfig(Section):
    max_pixels: int = Field(default=40_000_000, ge=1, description="larger images are rejected (bomb guard)")
    min_side: int = Field(default=16, ge=1, description="images with a shorter side are rejected too_small: they "
                          "cannot hold a face that aligns (docs/detection.md)")
    max_file_bytes: int = Field(default=50_000_000, ge=1)


FIRST_ATTEMPT = "original"  # detect_attempt of a face found on the image as given


class DetectAttempt(Section):
    """One retry of face detection on a changed copy of the image, after a miss on the image as given."""

    name: str = Field(pattern=r"^[a-z0-9_]+$", description="recorded in the row's detect_attempt")
    pad: float = Field(default=0.0, ge=0, le=2, description="black border added on every side, as a fraction of "
                       "the longer side (finds faces that touch the frame)")
    upscale_to: int | None = Field(default=None, ge=16, description="first upscale (bicubic) so the shorter side is at "
                                   "least this many px; an image already that large is not upscaled")

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name == FIRST_ATTEMPT:
            raise ValueError(f"{FIRST_ATTEMPT!r} names the first try on the image as given")
        return name


class DetectConfig(Section):
    model_path: str | None = Field(default=None, description="face_landmarker.task; None = packaged bundle")
    max_faces: int = Field(default=4, ge=1)
    multi_face: Literal["largest", "reject", "all"] = "largest"
    min_detection_confidence: float = Field(default=0.5, ge=0, le=1)
    min_presence_confidence: float = Field(default=0.5, ge=0, le=1)
    landmarks: str = Field(
        default="auto",
        description="what finds the face and its points, a backend of pipeline.builder.backends' registry: "
        "mediapipe (the Face Landmarker through "
        "MediaPipe, one image at a time on the CPU), torch (the same networks in torch, batched, on a GPU when "
        "present), auto (torch when the machine planning the build has a GPU, else mediapipe), or face-alignment "
        "(FAN's 68 landmarks, 2DFAN-4, computed in the Face Landmarker's face box)")
    torch_device: str | None = Field(default=None, description="landmarks torch: cuda | cpu; None = cuda if present")
    torch_batch_size: int = Field(default=32, ge=1, description="landmarks torch: images per detector pass "
                                  "(BatchElements maximum; their faces go through the mesh network together)")
    fan_weights: str | None = Field(default=None, description="folder (or file) holding 2DFAN4-11f355bf06.pth.tar; "
                                    "None = $FEA_FAN_WEIGHTS or torch hub's checkpoints folder")
    fan_device: str | None = Field(default=None, description="cuda | cpu; None = cuda if present")
    fan_batch_size: int = Field(default=16, ge=1, description="faces per FAN forward pass (BatchElements maximum)")
    retries: list[DetectAttempt] = Field(
        default_factory=lambda: [DetectAttempt(name="pad25", pad=0.25), DetectAttempt(name="pad50", pad=0.5)],
        description="tried in order when no face is found on the image as given; the first that finds a face wins")

    @field_validator("retries")
    @classmethod
    def _unique_names(cls, retries: list[DetectAttempt]) -> list[DetectAttempt]:
        names = [r.name for r in retries]
        if len(set(names)) != len(names):
            raise ValueError(f"detect.retries names must be unique: {names}")
        return retries


class AlignConfig(Section):
    crop_size: int = Field(default=336, ge=32, le=2048)
    jpeg_quality: int = Field(default=95, ge=50, le=100)
    min_face_px: float = Field(default=6.0, ge=0, description="minimum inter-ocular distance in source px: below it "
                               "the five points are too uncertain to align by (docs/detection.md)")
    low_resolution_px: float = Field(default=24.0, ge=0, description="faces with a smaller inter-ocular distance are "
                                     "kept and flagged low_resolution (their crop is upsampled)")
    max_abs_yaw: float = Field(default=70.0, gt=0, le=180)
    max_abs_pitch: float = Field(default=60.0, gt=0, le=180)
    min_blur_score: float = Field(default=0.0, ge=0, description="variance of Laplacian of the crop; 0 = off")


class AUConfig(Section):
    backend: str = Field(
        default="mediapipe", description="an AU backend of pipeline.builder.backends' registry: "
        "mediapipe: the Face Landmarker's own scores (CPU reference); "
        "torch-blendshapes: the same network in torch, batched, on GPU when present; "
        "pyfeat: py-feat's xgb AU detector (HOG + 68 landmarks), batched")
    device: str | None = Field(default=None,
                               description="torch-blendshapes, pyfeat: cuda | cpu; None = cuda if present")
    pyfeat_weights: str | None = Field(
        default=None, description="pyfeat: folder (or file) holding xgb_au_classifier_v2.skops; None = "
        "$FEA_PYFEAT_WEIGHTS or the Hugging Face cache (HF_HOME, py-feat's resources folder)")
    pyfeat_mapping: str = "schemas/pyfeat_to_au.json"
    max_batch_size: int = Field(default=64, ge=1, description="faces per batch of a batched AU backend (at most "
                                "runner.shard_size faces: a batch never spans two shards)")
    accelerator: str | None = Field(
        default=None, description="Beam resource hint for the AU stage, e.g. Dataflow "
        "'type:nvidia-tesla-t4;count:1;install-nvidia-driver'")
    head: str = Field(
        default="schemas/au_head.json",
        description="AU head (mediapipe, torch-blendshapes backends): per-AU linear scores over the blendshapes and "
        "mesh measures; the default is derived from FACS knowledge, `fea calibrate` learns one from FACS-coded builds")
    measures: str = Field(default="schemas/mesh_measures.json",
                          description="FACS geometric measures of the face mesh, recorded as face_measures")
    vocabulary: str = "schemas/au_vocabulary.csv"


class FaceCheckConfig(Section):
    """The second check of a candidate pair: are the two faces the same photograph, pixel for pixel?

    Each face's region of its source image (the face box scaled by `face_margin`) is kept as a grey
    `thumb_size` thumbnail with the region's place in the image. Two regions are compared where they overlap,
    at the same source-relative coordinates (a resized copy maps exactly; a new photo of a still scene does not),
    after normalising exposure (zero mean, unit variance); the largest local difference (smoothed over `blur_px`)
    decides. Pixels near black or white in either thumbnail are left out (brightening clips them)."""

    thumb_size: int = Field(default=48, ge=16, le=128, description="side of the face-region thumbnail, px")
    face_margin: float = Field(default=1.3, ge=1, le=3, description="the region: the face box scaled by this")
    max_residual: float = Field(default=0.22, gt=0, description="copies differ by at most this, in standard "
                                "deviations of the region's grey levels, anywhere in the region (faces of full detail)")
    max_residual_low_detail: float = Field(
        default=0.33, gt=0, description="the same for faces of at most 1 source px per thumbnail px (e.g. 48 px "
        "crops), where re-encoding and resizing change more; between the two, interpolated in log(detail)")
    full_detail: float = Field(default=3.0, gt=1, description="source px per thumbnail px from which max_residual "
                               "applies")
    blur_px: float = Field(default=1.0, ge=0, description="Gaussian sigma (thumbnail px) of the local difference: "
                           "averages out compression noise, keeps a moved mouth or eyelid")
    ignore_below: int = Field(default=20, ge=0, le=255, description="grey levels at or under this are left out")
    ignore_above: int = Field(default=235, ge=0, le=255, description="grey levels at or over this are left out")
    border_px: int = Field(default=2, ge=0, description="thumbnail border left out (resampling edge effects)")
    min_compared: float = Field(default=0.3, gt=0, le=1, description="share of the region that must be compared; "
                                "less (a face mostly black or white) is not a copy")
    min_box_iou: float = Field(default=0.5, ge=0, le=1, description="the two regions, in source-relative "
                               "coordinates, overlap at least this much (intersection over union)")
    max_aspect_change: float = Field(default=0.03, ge=0, description="|log| of the ratio of the two source images' "
                                     "aspect ratios, at most this (a resized copy keeps its aspect)")


class DedupConfig(Section):
    """One copy of each face across all sources (docs/dedup.md: the method and its measured error rates).

    Exact copies share the source file's SHA-256. Near copies are found by a perceptual hash of the source
    image within a Hamming radius, then confirmed face by face by `check` before one is rejected."""

    enabled: bool = Field(default=True, description="drop exact and near copies of a face, keeping one")
    hash_bits: int = Field(default=192, ge=32, le=512, description="bits of the perceptual hash of the source image "
                           "(signs of its lowest DCT frequencies against their median)")
    max_hash_distance: int = Field(default=11, ge=0, description="Hamming radius of candidate pairs; the hash is cut "
                                   "into max_hash_distance + 1 bands, so that any such pair shares a band exactly")
    check: FaceCheckConfig = Field(default_factory=FaceCheckConfig)

    @model_validator(mode="after")
    def _bands(self) -> DedupConfig:
        if self.hash_bits // (self.max_hash_distance + 1) < 8:
            raise ValueError("dedup: bands of fewer than 8 bits make too many candidates; lower max_hash_distance "
                             "or raise hash_bits")
        return self


class SynergyConfig(Section):
    prototypes: str = "schemas/emotion_prototypes.json"
    conflict_threshold: float = Field(default=0.34, ge=0, le=1)
    conflict_policy: Literal["keep", "flag", "reject"] = "flag"


class RenderConfig(Section):
    templates_dir: str = "templates"
    seed: int = 0
    tasks_per_face: int = Field(default=3, ge=1)
    mix: dict[str, float] = Field(
        default_factory=lambda: {
            "fe_recognition": 1.0,
            "fe_multiple_choice": 0.7,
            "emotion_verification": 0.7,
            "au_recognition": 1.0,
            "au_intensity": 0.7,
            "au_verification": 0.7,
            "au_to_fe_reasoning": 1.0,
            "fe_to_au": 0.7,
            "description": 1.0,
            "mixed_cues": 2.0,
            "multi_turn": 0.7,
        }
    )

    @field_validator("mix")
    @classmethod
    def _positive(cls, mix: dict[str, float]) -> dict[str, float]:
        if not mix or any(w < 0 for w in mix.values()) or sum(mix.values()) <= 0:
            raise ValueError("render.mix needs at least one task with a positive weight")
        return mix


class LLMConfig(Section):
    """The optional LLM stage: rewrite answers or write reasoning from the labels, through any
    OpenAI-compatible endpoint. The API key is read from the environment variable *named* here,
    never from params (params are hashed, logged and versioned)."""

    enabled: bool = False
    base_url: str | None = Field(default=None, description="e.g. http://localhost:8000/v1; None = OpenAI's")
    model: str = "gpt-4o-mini"
    api_key_env: str = Field(default="OPENAI_API_KEY", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    tasks: dict[str, Literal["rewrite", "reason"]] = Field(
        default_factory=lambda: {"description": "rewrite", "au_to_fe_reasoning": "reason"},
        description="task -> rewrite (say the template answer in natural language) | reason "
        "(write evidence -> inference -> answer from the labels); other tasks keep template text")
    prompts: str = "templates/llm/prompts.yaml"
    temperature: float = Field(default=0.7, ge=0, le=2)
    max_tokens: int = Field(default=300, ge=1)
    seed: int = 0
    max_concurrency: int = Field(default=8, ge=1, description="requests in flight at once, all workers together")
    batch_size: int = Field(default=32, ge=1, description="instructions handed to one worker call")
    timeout_s: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=3, ge=0, description="retries with backoff on 429, 5xx and timeouts")
    cache_dir: str = Field(default=".fea_cache/llm", description="responses by request hash; a re-run is free")
    budget_tokens: int | None = Field(default=None, ge=1, description="stop requesting after this many tokens")
    on_error: Literal["fallback", "stop"] = Field(
        default="fallback", description="endpoint failure after retries: keep the template text and mark the "
        "row (fallback), or stop the build (stop; responses so far stay cached)")
    mode: Literal["online", "batch-export"] = Field(
        default="online", description="batch-export: write uncached requests as Batch-API JSONL instead of "
        "calling the endpoint (fea llm import-batch loads the results into the cache)")

    @field_validator("cache_dir")
    @classmethod
    def _writable(cls, cache_dir: str) -> str:
        return local_output_path(cache_dir)


class SplitConfig(Section):
    seed: int = 0
    ratios: dict[str, float] = Field(default_factory=lambda: {"train": 0.9, "test": 0.1})

    @field_validator("ratios")
    @classmethod
    def _sums_to_one(cls, ratios: dict[str, float]) -> dict[str, float]:
        if abs(sum(ratios.values()) - 1.0) > 1e-6 or any(r < 0 for r in ratios.values()):
            raise ValueError("split.ratios must be non-negative and sum to 1")
        return ratios


class OutputConfig(Section):
    dir: str = "build/demo"
    compression: Literal["zstd", "snappy", "gzip", "none"] = "zstd"
    overwrite: bool = True
    row_group_mb: float = Field(
        default=8.0, gt=0, description="rows are written in row groups of about this many MB (uncompressed); "
        "a writer holds at most one such group in memory, so memory does not grow with the build")

    @field_validator("dir")
    @classmethod
    def _writable(cls, out_dir: str) -> str:
        return output_location(out_dir)


class ValidateConfig(Section):
    suite: str = "schemas/expectations/fea_record_suite.json"
    min_accept_rate: float = Field(default=0.0, ge=0, le=1)
    max_duplicate_rate: float = Field(default=0.05, ge=0, le=1, description="exact duplicate faces")
    min_class_accept_ratio: float = Field(
        default=0.5, ge=0, le=1, description="an emotion's acceptance rate vs the overall rate, at least"
    )
    reverify_rows: int | None = Field(
        default=1000, ge=1, description="answers a build's validation re-reads with the grounding verifier, spread "
        "over the rows (the verify stage has judged every row); None = every row. `fea validate` reads every row")


class Config(Section):
    sources: list[SourceConfig] = Field(default_factory=lambda: [SourceConfig(name="demo", kind="demo")])
    runner: RunnerConfig = Field(default_factory=RunnerConfig)
    decode: DecodeConfig = Field(default_factory=DecodeConfig)
    detect: DetectConfig = Field(default_factory=DetectConfig)
    align: AlignConfig = Field(default_factory=AlignConfig)
    au: AUConfig = Field(default_factory=AUConfig)
    synergy: SynergyConfig = Field(default_factory=SynergyConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    render: RenderConfig = Field(default_factory=RenderConfig)
    llm: LLMConfig = Field(default_factory=LLMConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    validate_: ValidateConfig = Field(default_factory=ValidateConfig, alias="validate")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    # Where relative paths that the build READS are anchored (the params file's folder).
    base_dir: Path = Field(default=PROJECT_ROOT, exclude=True)
    # Where relative paths that the build WRITES are anchored: the params file's folder, or the working
    # directory when the params are the package's own (None: the working directory at resolve time).
    output_base: Path | None = Field(default=None, exclude=True)
    _paths: Paths | None = PrivateAttr(default=None)

    @property
    def paths(self) -> Paths:
        """The build's locations, resolved on first use (where the build starts, in its working directory) and
        then fixed."""
        if self._paths is None:
            self._paths = Paths(
                au_vocabulary=self.resolve_input(self.au.vocabulary),
                au_measures=self.resolve_input(self.au.measures),
                au_head=self.resolve_input(self.au.head),
                au_pyfeat_mapping=self.resolve_input(self.au.pyfeat_mapping),
                prototypes=self.resolve_input(self.synergy.prototypes),
                templates_dir=self.resolve_input(self.render.templates_dir),
                llm_prompts=self.resolve_input(self.llm.prompts),
                llm_cache_dir=self.resolve_output(self.llm.cache_dir),
                output_dir=self.resolve_output(self.output.dir),
                validation_suite=self.resolve_input(self.validate_.suite),
                sources=tuple(self.resolve_input(s.path) if s.path else None for s in self.sources),
            )
        return self._paths

    def resolve_input(self, path: str | Path) -> Path:
        """A path the build reads (schemas, templates, corpora): a URL (as a UPath), absolute, or relative to
        the params file's folder; one that exists only in the package (schemas/, templates/) falls back to the
        package's copy, so a params file kept elsewhere needs to name only what it changes."""
        if storage.is_url(path):
            return storage.location(str(path))
        p = Path(path).expanduser()
        if p.is_absolute():
            return p
        local = (self.base_dir / p).resolve()
        if not local.exists() and (PROJECT_ROOT / p).exists():
            return (PROJECT_ROOT / p).resolve()
        return local

    def resolve_output(self, path: str | Path) -> Path:
        """A path the build writes (output.dir, llm.cache_dir): a URL (as a UPath), absolute, or relative to
        the params file's folder (the working directory for the package's own params). Never the package's
        folder: writing there would hide a user's outputs in the install (and break `dvc repro` in a copy of
        the project)."""
        if storage.is_url(path):
            return storage.location(output_location(str(path)))
        p = Path(path).expanduser()
        if p.is_absolute():
            return p
        return ((self.output_base or Path.cwd()) / p).resolve()

    def params_hash(self) -> str:
        """Hash of everything that shapes the output (not where it is written)."""
        data = self.model_dump(mode="json", by_alias=True, exclude={
            "base_dir": True, "output_base": True, "runner": True, "output": True,
            # How the LLM is reached, not what it is asked: these do not change the rows.
            "llm": {"max_concurrency", "batch_size", "timeout_s", "max_retries", "cache_dir", "on_error"},
        })
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `a.b.c` in a nested dict, creating sections as needed."""
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot set {dotted}: {key} is not a section")
    node[keys[-1]] = value


def default_params_path() -> Path:
    """./params.yaml when there is one (a DVC checkout, a user's project), else the project's own."""
    local = Path.cwd() / "params.yaml"
    return local if local.is_file() else DEFAULT_PARAMS


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read params.yaml (or the defaults) and apply `key.path=value` overrides (values parsed as YAML)."""
    params_path = Path(path) if path else default_params_path()
    data: dict[str, Any] = {}
    if params_path.exists():
        try:
            loaded = yaml.safe_load(params_path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{params_path}: not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{params_path}: top level must be a mapping")
        data = loaded
    elif path is not None:
        raise ConfigError(f"params file not found: {params_path}")
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key.path=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: value is not valid YAML: {exc}") from None
        set_dotted(data, key.strip(), value)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        # A validator's own message as written, without pydantic's "Value error, " prefix.
        message = str(first["ctx"]["error"]) if first["type"] == "value_error" else first["msg"]
        raise ConfigError(f"invalid params ({where}): {message}") from None
    config.base_dir = params_path.resolve().parent if params_path.exists() else PROJECT_ROOT
    # The package's own params write where the command runs; a user's params next to themselves.
    config.output_base = None if config.base_dir == PROJECT_ROOT else config.base_dir
    return config
