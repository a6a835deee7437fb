"""Benchmark: throughput of the model backends of the AU / landmark stages on real faces.

The faces (default: 50 photos of the shared faces-in-the-wild sample) go through the real decode,
MediaPipe detect and align stages once; then each backend's model call is timed as its batched stage
makes it, at each batch size, in faces per second:

- pyfeat: `PyFeatAU.predict` (HOG of the 68-point-aligned face + py-feat's xgb classifiers),
- face-alignment: `FanLandmarks.predict` (FAN-4 in the Face Landmarker's box),
- torch-blendshapes: `TorchBlendshapes.predict` (reference; real weights from the bundle).

Without network the py-feat and FAN weights are the RANDOM ones of benchmarks/random_weights.py,
written to a temp folder: their outputs are meaningless, only the speed is (the networks' and
classifiers' shapes are the real ones; the random xgb trees are shallower than py-feat's, so the
pyfeat figure is an upper bound for the classifier part, HOG dominates). Give --pyfeat-weights /
--fan-weights to time real files.

    python benchmarks/bench_backends.py                                # CPU, 50 faces, batch 1 and 16
    python benchmarks/bench_backends.py --device cuda --batch-sizes 1 16 64

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "faces-in-the-wild-sample"


def aligned_faces(corpus: Path, n: int) -> list:
    from pipeline.config import AlignConfig, DecodeConfig, DetectConfig, load_config
    from pipeline.domain.record import Sample, SourceItem
    from pipeline.stages.align import AlignStage
    from pipeline.stages.decode import DecodeStage
    from pipeline.stages.detect import DetectStage

    config = load_config()
    decode, detect = DecodeStage(DecodeConfig()), DetectStage(DetectConfig(multi_face="largest"))
    align = AlignStage(AlignConfig(), config.resolve_input("schemas/alignment_template.json"))
    detect.setup()
    faces = []
    for path in sorted((corpus / "images").iterdir()):
        for decoded in decode.run(SourceItem("bench", path.name, str(path))):
            for face in detect.run(decoded) if isinstance(decoded, Sample) else []:
                if not isinstance(face, Sample):
                    continue
                pixels = face.pixels
                for aligned in align.run(face):
                    if isinstance(aligned, Sample):
                        aligned.pixels = pixels  # kept for FAN, which reads the source image
                        faces.append(aligned)
        if len(faces) >= n:
            break
    detect.teardown()
    return faces[:n]


def rate(call, faces: list, batch: int, repeats: int) -> float:
    call(faces[:batch])  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(0, len(faces), batch):
            call(faces[i : i + batch])
        best = min(best, time.perf_counter() - start)
    return round(len(faces) / best, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--faces", type=int, default=50)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (a Beam worker uses 1)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--pyfeat-weights", type=Path)
    parser.add_argument("--fan-weights", type=Path)
    parser.add_argument("--skip", nargs="*", default=[], choices=["pyfeat", "face-alignment", "torch-blendshapes"])
    args = parser.parse_args()

    import cv2
    import torch
    from random_weights import write_fan_2d, write_pyfeat_xgb_au  # beside this script

    from pipeline.stages.au_pyfeat import landmarks_68_in_crop
    from pipeline.stages.landmarks_fan import mesh_box

    torch.set_num_threads(args.threads)
    faces = aligned_faces(args.corpus, args.faces)
    scratch = Path(tempfile.mkdtemp(prefix="bench-backends-"))
    report: dict = {"faces": len(faces), "device": args.device, "threads": args.threads,
                    "machine": platform.processor() or platform.machine(), "faces_per_second": {},
                    "weights": {}}
    if "pyfeat" not in args.skip:
        from pipeline.models.pyfeat_au import PyFeatAU

        weights = args.pyfeat_weights or write_pyfeat_xgb_au(scratch / "pyfeat").parent
        report["weights"]["pyfeat"] = "given" if args.pyfeat_weights else "random (speed only)"
        model = PyFeatAU(weights, args.device)

        def pyfeat(batch: list) -> None:
            crops = np.stack([cv2.imdecode(np.frombuffer(s.crop_jpeg, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
                              for s in batch])
            model.predict(crops, np.stack([landmarks_68_in_crop(s) for s in batch]))

        report["faces_per_second"]["pyfeat"] = {b: rate(pyfeat, faces, b, args.repeats) for b in args.batch_sizes}
    if "face-alignment" not in args.skip:
        from pipeline.models.fan import FanLandmarks

        weights = args.fan_weights or write_fan_2d(scratch / "fan").parent
        report["weights"]["face-alignment"] = "given" if args.fan_weights else "random (speed only)"
        fan = FanLandmarks(weights, args.device)
        report["faces_per_second"]["face-alignment"] = {
            b: rate(lambda batch: fan.predict([s.pixels for s in batch], np.array([mesh_box(s.mesh) for s in batch])),
                    faces, b, 1) for b in args.batch_sizes}
    if "torch-blendshapes" not in args.skip:
        from pipeline.models.blendshapes_torch import TorchBlendshapes

        torch_bs = TorchBlendshapes(device=args.device)
        report["faces_per_second"]["torch-blendshapes"] = {
            b: rate(lambda batch: torch_bs.predict(np.stack([s.mesh for s in batch])), faces, b, args.repeats)
            for b in args.batch_sizes}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
