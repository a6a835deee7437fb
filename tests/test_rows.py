"""Output rows: ToRows (face columns computed once per face) gives exactly the rows instruction_row gives,
whatever the order the instructions of several faces arrive in."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from pipeline.config import SplitConfig
from pipeline.domain.record import Instruction, Sample, SourceItem
from pipeline.domain.splits import assign_split
from pipeline.io.rows import ToRows, instruction_row
from pipeline.io.schema import arrow_schema

VERSIONS = dict.fromkeys(["detector", "au_model", "templates_version", "pipeline_version", "params_hash"], "v1")


def face(name: str, subject: str | None = None) -> Sample:
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    return Sample(
        item=SourceItem("test", f"{name}.jpg", f"/nowhere/{name}.jpg", emotion="happiness", subject_id=subject),
        image_sha256=name * 4, source_width=350, source_height=350, num_faces_detected=1,
        pose=(1.5, -2.0, 0.25), bbox=[10.123, 20.456, 200.0, 220.0],
        landmarks_5=rng.random((5, 2), dtype=np.float32) * 300,
        landmarks_5_aligned=rng.random((5, 2), dtype=np.float32) * 300,
        face_size_px=61.2, blur_score=88.0, crop_jpeg=name.encode() * 10,
        au_intensity=rng.random(20, dtype=np.float32) * 5, au_present=["AU6", "AU12"], au_source="model:x",
        blendshapes=rng.random(52, dtype=np.float32), fe_au_consistency=0.8, evidence_aus=["AU12"],
    )


def instruction(sample: Sample, task: str) -> Instruction:
    conv = [{"role": "user", "content": "<image>\nWhich emotion?"}, {"role": "assistant", "content": "Happiness."}]
    inst = Instruction(sample, task, f"{task}/q0a0@1", conv)
    inst.grounding_verdict = "grounded"
    return inst


def test_to_rows_equals_instruction_row_in_any_order() -> None:
    split = SplitConfig()
    a, b, c = face("a"), face("b", subject="p1"), face("c")
    order = [instruction(a, "t1"), instruction(a, "t2"), instruction(b, "t1"), instruction(a, "t3"),
             instruction(c, "t1"), instruction(c, "t2"), instruction(b, "t2")]
    to_rows = ToRows(split.ratios, split.seed, VERSIONS)
    rows = [row for inst in order for row in to_rows.process(inst)]
    expected = [instruction_row(inst, assign_split(inst.sample, split.ratios, split.seed), VERSIONS) for inst in order]
    assert rows == expected
    assert [r["face_id"] for r in rows] == [s.face_id for s in (a, a, b, a, c, c, b)]
    assert len({r["sample_id"] for r in rows}) == len(rows)
    # The rows fit the record schema exactly (no missing or extra column).
    assert pa.Table.from_pylist(rows, schema=arrow_schema("record")).num_rows == len(rows)
    assert set(rows[0]) == set(arrow_schema("record").names)


def test_parquet_writer_bounds_row_groups(tmp_path) -> None:
    """The build's Parquet sink (Beam's WriteToParquet) writes row groups of about output.row_group_mb, so a
    writer holds one small group at a time; every row arrives."""
    import apache_beam as beam
    import pyarrow.parquet as pq
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipeline.builder.run import parquet_writer
    from pipeline.config import OutputConfig

    schema = arrow_schema("record")
    split = SplitConfig()
    to_rows = ToRows(split.ratios, split.seed, VERSIONS)
    rows = [row for i in range(300) for row in to_rows.process(instruction(face(f"f{i}"), "t1"))]
    options = PipelineOptions(["--runner=DirectRunner", "--direct_running_mode=in_memory"])
    with beam.Pipeline(options=options) as p:
        p | beam.Create(rows) | parquet_writer(tmp_path / "train", schema, OutputConfig(row_group_mb=0.02))
    files = sorted(tmp_path.glob("train-*-of-*.parquet"))
    assert files
    meta = [pq.ParquetFile(f).metadata for f in files]
    assert sum(m.num_rows for m in meta) == 300
    assert max(m.num_row_groups for m in meta) >= 3
    assert all(m.row_group(0).column(0).compression == "ZSTD" for m in meta)
