"""Write a csv corpus of distinct faces that MediaPipe finds on the first try: the throughput corpus of the
face stages (detection retries cost nothing there, and dedup has no copy to drop, so every input costs a
build the same work before and after a change).

From each photo of the source corpus whose face is found on the photo as given it writes the photo, its
mirror image and three expression changes (`derived.expression_warp`: smile, jaw, brow at 0.2 x the
inter-ocular distance), each also mirrored: up to 8 distinct faces per photo. Variants whose face is not
found on the first try are left out. None is a copy of another: bench_dedup.py measures no merge among
these kinds of pairs.

    python benchmarks/distinct_corpus.py OUT_DIR [--n 1000] [--corpus ../shared/corpora/faces-in-the-wild-sample]
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import derived  # noqa: E402 - the derived-data helpers next to this script

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "faces-in-the-wild-sample"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    args = parser.parse_args()
    from pipeline.models.landmarker import FaceLandmarker

    landmarker = FaceLandmarker(max_faces=4)
    rows = list(csv.DictReader(open(args.corpus / "labels.csv")))
    items = []
    for kinds in (("orig",), derived.WARP_KINDS):  # every photo (and mirrored) first, then the expressions
        for row in rows:
            if len(items) >= args.n:
                break
            rgb = derived.decode((args.corpus / "images" / row["image"]).read_bytes())
            faces = landmarker.detect(rgb)
            if len(faces) != 1:
                continue
            for kind in kinds:
                image = rgb if kind == "orig" else derived.expression_warp(rgb, faces[0].mesh, kind, 0.2)
                for flip, pixels in (("", image), ("m", derived.mirror(image))):
                    if len(items) < args.n and len(landmarker.detect(pixels)) == 1:
                        items.append((f"{kind}{flip}_{row['image']}", pixels, row["emotion"]))
    landmarker.close()
    derived.write_corpus(args.out, items, quality=92)
    print(f"{len(items)} images in {args.out}")


if __name__ == "__main__":
    main()
