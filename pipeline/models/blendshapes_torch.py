"""The MediaPipe blendshape network in torch: batched, on GPU when there is one, weights read offline.

The Face Landmarker bundle (`face_landmarker.task`, a zip) holds `face_blendshapes.tflite`: an
MLP-Mixer (about 450k parameters, fp16 weights) that maps 146 of the 478 face-mesh landmarks, x/y
in pixel units, to the 52 blendshape scores. This module rebuilds that graph in torch and loads the
weights straight from the bundle, so the scores can be computed for many faces at once (e.g. for
meshes already stored in a build) instead of one image at a time inside MediaPipe.

The graph, as the TFLite file has it (B faces, N=146 points):
    p -= mean_N(p);  p /= mean_N(|p|_2);  p *= 0.5             (translation/scale normalisation)
    tokens = Linear_N(146 -> 96) over points, then Linear(2 -> 64) over coordinates
    x = [learned extra token; tokens]                           (B, 97, 64)
    4 x Mixer block: x += MLP_tokens(LN(x)^T)^T;  x += MLP_channels(LN(x))   (LN without bias)
    scores = sigmoid(Linear(64 -> 52)(x[:, 0]))
Being normalised for translation and scale, the scores depend only on the landmarks' shape: pixel
units matter because x and y must share one scale (normalised x, y of a non-square image do not).
"""

from __future__ import annotations

import json
import zipfile
from functools import cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.domain.data import data_file
from pipeline.models.files import ModelFile, ModelFileError, resolve_model
from pipeline.models.tflite_weights import read_tflite_tensors

BLENDSHAPES_MEMBER = "face_blendshapes.tflite"
LANDMARKS_FILE = data_file("blendshape_landmarks.json")
NAMES_FILE = data_file("blendshapes.json")

NUM_MESH_POINTS = 478
NUM_INPUT_POINTS = 146
NUM_TOKENS = 96
WIDTH = 64
TOKEN_HIDDEN = 384
CHANNEL_HIDDEN = 256
NUM_BLOCKS = 4
NUM_BLENDSHAPES = 52
CPU_CHUNK = 32
GPU_CHUNK = 8192

# Tensor names in face_blendshapes.tflite, relative to this scope.
_SCOPE = "model_1/GhumMarkerPoserMlpMixerGeneral/"


@cache
def blendshape_landmark_indices() -> tuple[int, ...]:
    """The 146 face-mesh indices the network reads, in input order (blendshape_landmarks.json)."""
    indices = tuple(int(i) for i in json.loads(LANDMARKS_FILE.read_text())["indices"])
    if len(indices) != NUM_INPUT_POINTS or len(set(indices)) != NUM_INPUT_POINTS:
        raise ValueError(f"{LANDMARKS_FILE}: expected {NUM_INPUT_POINTS} distinct indices, got {len(indices)}")
    if not all(0 <= i < NUM_MESH_POINTS for i in indices):
        raise ValueError(f"{LANDMARKS_FILE}: indices must lie in [0, {NUM_MESH_POINTS})")
    return indices


@cache
def blendshape_names() -> tuple[str, ...]:
    return tuple(json.loads(NAMES_FILE.read_text())["names"])


class _MixerBlock(nn.Module):
    def __init__(self, eps: float) -> None:
        super().__init__()
        self.token_norm = nn.LayerNorm(WIDTH, eps=eps, bias=False)
        self.token_up = nn.Linear(NUM_TOKENS + 1, TOKEN_HIDDEN)
        self.token_down = nn.Linear(TOKEN_HIDDEN, NUM_TOKENS + 1)
        self.channel_norm = nn.LayerNorm(WIDTH, eps=eps, bias=False)
        self.channel_up = nn.Linear(WIDTH, CHANNEL_HIDDEN)
        self.channel_down = nn.Linear(CHANNEL_HIDDEN, WIDTH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 97, 64)
        mixed = self.token_norm(x).transpose(1, 2)  # (B, 64, 97): mix across tokens
        x = x + self.token_down(torch.relu_(self.token_up(mixed))).transpose(1, 2)
        return x + self.channel_down(torch.relu_(self.channel_up(self.channel_norm(x))))


class BlendshapeMixer(nn.Module):
    """(B, 146, 2) landmarks in pixel units -> (B, 52) blendshape scores in [0, 1]."""

    def __init__(self, eps: float = 1e-6, input_scale: float = 0.5) -> None:
        super().__init__()
        self.input_scale = input_scale
        self.point_pool = nn.Linear(NUM_INPUT_POINTS, NUM_TOKENS)
        self.embed = nn.Linear(2, WIDTH)
        self.extra_token = nn.Parameter(torch.zeros(1, 1, WIDTH))
        self.blocks = nn.ModuleList(_MixerBlock(eps) for _ in range(NUM_BLOCKS))
        self.head = nn.Linear(WIDTH, NUM_BLENDSHAPES)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        centred = points - points.mean(dim=1, keepdim=True)
        spread = centred.norm(dim=2).mean(dim=1)[:, None, None]
        normalised = centred / spread * self.input_scale
        tokens = self.embed(self.point_pool(normalised.transpose(1, 2)).transpose(1, 2))  # (B, 96, 64)
        x = torch.cat([self.extra_token.expand(points.shape[0], -1, -1), tokens], dim=1)
        for block in self.blocks:
            x = block(x)
        return torch.sigmoid(self.head(x[:, 0]))


def _tflite_names() -> dict[str, str]:
    """BlendshapeMixer state-dict key -> tensor name in face_blendshapes.tflite."""
    names = {
        "point_pool.weight": "conv2d/Conv2D",
        "point_pool.bias": "conv2d/BiasAdd/ReadVariableOp",
        "embed.weight": "MLPMixer/input_tokens_embedding/Conv2D",
        "embed.bias": "MLPMixer/input_tokens_embedding/BiasAdd/ReadVariableOp",
        "extra_token": "MLPMixer/AddExtraTokens/strided_slice_1",
        "head.weight": "output_blendweights/Conv2D",
        "head.bias": "output_blendweights/BiasAdd/ReadVariableOp",
    }
    for b in range(NUM_BLOCKS):
        scope = f"MLPMixer/MixerBlock_{b}/"
        names[f"blocks.{b}.token_norm.weight"] = scope + "layer_norm1/batchnorm/mul/ReadVariableOp"
        names[f"blocks.{b}.channel_norm.weight"] = scope + "layer_norm2/batchnorm/mul/ReadVariableOp"
        for key, mlp in (("token", "mlp_token_mixing"), ("channel", "mlp_channel_mixing")):
            for layer, part in (("up", "Mlp_1"), ("down", "Mlp_2")):
                names[f"blocks.{b}.{key}_{layer}.weight"] = f"{scope}{mlp}/{part}/Conv2D"
                names[f"blocks.{b}.{key}_{layer}.bias"] = f"{scope}{mlp}/{part}/BiasAdd/ReadVariableOp"
    return {key: _SCOPE + name for key, name in names.items()}


def _scalar(tensors: dict[str, np.ndarray], suffix: str) -> float:
    found = [v for k, v in tensors.items() if k.endswith(suffix)]
    if len(found) != 1 or found[0].size != 1:
        raise ModelFileError(f"{BLENDSHAPES_MEMBER}: expected one scalar tensor named …{suffix}, found {len(found)}")
    return float(found[0].reshape(()))


def mixer_from_tflite(data: bytes) -> BlendshapeMixer:
    """Build a BlendshapeMixer carrying the weights of face_blendshapes.tflite (its bytes)."""
    tensors = read_tflite_tensors(data)
    model = BlendshapeMixer(
        eps=_scalar(tensors, "MixerBlock_0/layer_norm1/batchnorm/add/y"),
        input_scale=_scalar(tensors, "tf.math.truediv/truediv/y"),
    )
    state = {}
    for key, name in _tflite_names().items():
        if name not in tensors:
            raise ModelFileError(f"{BLENDSHAPES_MEMBER}: tensor {name} missing; not the expected blendshape model")
        target = model.state_dict()[key]
        value = tensors[name].astype(np.float32)
        if value.size != target.numel():
            expected = tuple(target.shape)
            raise ModelFileError(f"{BLENDSHAPES_MEMBER}: {name} has shape {value.shape}, expected {expected}")
        # 1x1 convolution kernels are stored (out, 1, 1, in): the same numbers as a Linear (out, in) weight.
        state[key] = torch.from_numpy(value.reshape(tuple(target.shape)))
    model.load_state_dict(state, strict=True)
    return model.eval()


def read_blendshape_tflite(bundle: ModelFile) -> bytes:
    """The bytes of face_blendshapes.tflite inside a face_landmarker.task bundle."""
    try:
        with zipfile.ZipFile(bundle.path) as archive:
            if BLENDSHAPES_MEMBER not in archive.namelist():
                raise ModelFileError(
                    f"{bundle.name}: {bundle.path} holds no {BLENDSHAPES_MEMBER} "
                    f"(members: {', '.join(archive.namelist())}); a Face Landmarker bundle with blendshapes is needed"
                )
            return archive.read(BLENDSHAPES_MEMBER)
    except zipfile.BadZipFile as exc:
        raise ModelFileError(f"{bundle.name}: {bundle.path} is not a .task bundle (zip): {exc}") from exc


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class TorchBlendshapes:
    """MediaPipe's 52 blendshape scores from face-mesh landmarks, many faces per call.

    `predict` takes landmarks in pixel units (the Face Landmarker mesh as this pipeline stores it),
    either the full (B, 478, 2|3) mesh or the (B, 146, 2) subset; z is ignored.
    """

    def __init__(
        self,
        device: str | None = None,
        model_path: str | Path | None = None,
        batch_size: int | None = None,
    ) -> None:
        self.model_file: ModelFile = resolve_model("face_landmarker", model_path)
        self.device = torch.device(device or default_device())
        # Faces per forward pass. On CPU small chunks stay in cache (256 at once is slower per face than 32).
        self.batch_size = int(batch_size or (CPU_CHUNK if self.device.type == "cpu" else GPU_CHUNK))
        self.indices = torch.tensor(blendshape_landmark_indices(), dtype=torch.long, device=self.device)
        self.network = mixer_from_tflite(read_blendshape_tflite(self.model_file)).to(self.device)
        self.names: tuple[str, ...] = blendshape_names()

    @property
    def version(self) -> str:
        return f"torch-blendshapes@{self.model_file.sha256[:12]}"

    def select(self, landmarks: torch.Tensor) -> torch.Tensor:
        """(B, 478, 2|3) or (B, 146, 2|3) -> (B, 146, 2) network input (x, y only)."""
        if landmarks.ndim != 3 or landmarks.shape[2] not in (2, 3):
            raise ValueError(f"landmarks must be (B, 478|146, 2|3), got {tuple(landmarks.shape)}")
        if landmarks.shape[1] == NUM_MESH_POINTS:
            landmarks = landmarks.index_select(1, self.indices)
        elif landmarks.shape[1] != NUM_INPUT_POINTS:
            raise ValueError(f"expected {NUM_MESH_POINTS} or {NUM_INPUT_POINTS} landmarks, got {landmarks.shape[1]}")
        return landmarks[..., :2]

    @torch.inference_mode()
    def forward(self, landmarks: torch.Tensor) -> torch.Tensor:
        """Tensor in, tensor out, on `self.device` (for callers that keep data on the GPU)."""
        points = self.select(landmarks.to(self.device, torch.float32))
        return self.network(points)

    def predict(
        self,
        landmarks: np.ndarray,
        image_size: tuple[int, int] | np.ndarray | None = None,
    ) -> np.ndarray:
        """Blendshape scores (B, 52) float32 for landmarks (B, 478|146, 2|3); one face (N, 2|3) -> (52,).

        Landmarks are in pixel units. For MediaPipe's normalised [0, 1] coordinates give
        `image_size` as (width, height), or a (B, 2) array of them, and x, y are scaled by it.
        """
        array = np.asarray(landmarks, dtype=np.float32)
        single = array.ndim == 2
        if single:
            array = array[None]
        if array.ndim != 3:
            raise ValueError(f"landmarks must be (B, N, 2|3) or (N, 2|3), got {array.shape}")
        if image_size is not None:
            size = np.asarray(image_size, dtype=np.float32).reshape(-1, 1, 2)
            array = array.copy()
            array[..., :2] *= size
        if len(array) == 0:
            return np.zeros((0, NUM_BLENDSHAPES), dtype=np.float32)
        out = [
            self.forward(torch.from_numpy(array[start : start + self.batch_size])).cpu().numpy()
            for start in range(0, len(array), self.batch_size)
        ]
        scores = np.concatenate(out).astype(np.float32, copy=False)
        return scores[0] if single else scores
