"""The dataset card of a build: `<out>/README.md`, generated from manifest.json and the rows.

The card is a Hugging Face dataset card (YAML front matter: licence, task categories, one config
with the data files of each split) followed by what a trainer needs to trust a release: sources and
their licence terms, counts that add up, label and AU distributions, the AU extractor and every
version, the params hash, and the known limitations. Licence terms come from the source options
(`licence`, `licence_url`) or, by source kind, from the packaged `licences.json`.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from pipeline.au.accuracy import ACCURACY_COLUMNS, LEVELS_NOTE, accuracy_cells, head_summary_lines
from pipeline.domain.data import DATA_DIR, data_file
from pipeline.io.build_dir import BuildDir
from pipeline.io.manifest import Manifest
from pipeline.knowledge import packaged_emotions
from pipeline.report.stats import UNLABELLED, BuildStats, load_stats

LICENCES_FILE = data_file("licences.json")
CARD_NAME = "README.md"
TASK_CATEGORIES = ["image-text-to-text", "visual-question-answering", "image-classification"]
TAGS = ["facial-expression-recognition", "action-units", "facs", "emotion", "instruction-tuning"]

LIMITATIONS = [
    "AUs are measured, not annotated: an AU head (`manifest.json` `au_head`, `au_source`) reads the MediaPipe "
    "Face Landmarker's blendshapes and FACS measures of its face mesh. The default head is derived from FACS "
    f"knowledge without AU labels (`{DATA_DIR.name}/au_head_spec.json`); a head learned with `fea calibrate` on a "
    "FACS-coded corpus names that corpus. They are not FACS-coder labels, except for rows from corpora that ship "
    "FACS coding (CK+, DISFA, DISFA+, BP4D, RAF-AU, or a csv/jsonl `au_column`): there `au_intensity`/`au_present` "
    "take the corpus coding for the AUs it annotates (`au_annotated`) and the model estimate elsewhere; the two "
    "inputs stay in `au_label_*` and `au_model_*`, and `au_source` names both (e.g. `corpus:ckplus+model:...`).",
    "AU values depend on the face alone (its blendshapes and mesh), never on its emotion label, corpus or file "
    "name; the raw inputs are in the rows (`blendshapes`, `face_measures`) for anyone who wants another head.",
    "MediaPipe's noseSneer and cheekSquint blendshapes stay near zero on real photos: AU9 and AU6 rest on other "
    "evidence (nose-wing and cheek geometry, brow lowering, the lip-corner pull) and are the least certain.",
    "Only the AUs of the vocabulary can ever be present.",
    "Emotion labels come from the source corpora as given (file-name codes for the demo corpus, the corpus' "
    "CSV otherwise), mapped to 8 canonical categories. In-the-wild corpora are usually crowd-sourced: labels "
    "are noisy and reflect annotators' perception, not the person's felt emotion.",
    f"The FE-AU consistency score compares measured AUs with prototype patterns (`{DATA_DIR.name}/"
    "emotion_prototypes.json`); a conflict flag means the AUs weakly support the label, not that the label is wrong.",
    "Answers are rendered from templates: their wording is limited to the phrasings in `templates/`, "
    "so a model trained on them learns that style.",
    "Frames sampled from one video are near-duplicates (dedup leaves a clip's frames to its sampling rules); splits "
    "are subject-disjoint only when subjects are known.",
    "Copies of a photo across or within sources are dropped (one kept, the others in the rejects with "
    "`duplicate_of`): exact copies by file hash, near copies (re-encoded, resized, re-exposed) by a perceptual hash "
    "confirmed on the face; a copy that was also cropped, rotated or mirrored is kept, and copies of very small "
    "images are missed more often (rates in the project's docs/dedup.md).",
    "Faces that were not detected (after the detection retries), too small to align, too turned or unreadable are "
    "rejected (see the accounting); the dataset under-represents such faces. Low-resolution faces are kept and "
    "flagged (`low_resolution`); filter on it, or on `detect_attempt`, for a cleaner subset.",
]


def write_dataset_card(out_dir: Path | str | BuildDir) -> Path:
    """Write the build's README.md (its dataset card) from its manifest and rows; return its path."""
    build = BuildDir(out_dir)
    stats = load_stats(build)
    manifest = stats.manifest
    licences = [source_licence(s) for s in manifest.sources]
    front = front_matter(build, manifest, licences)
    body = "\n".join([
        *_intro(manifest),
        *_sources(licences),
        *_accounting(stats),
        *_labels(stats),
        *_aus(stats),
        *_texts(stats),
        *_versions(manifest),
        *_limitations(stats),
    ])
    path = build.card_path
    path.write_text("---\n" + yaml.safe_dump(front, sort_keys=False, allow_unicode=True) + "---\n\n" + body)
    return path


def _licence_table() -> dict[str, Any]:
    return json.loads(LICENCES_FILE.read_text())


def source_licence(source: dict[str, Any]) -> dict[str, Any]:
    """Licence terms of one manifest `sources[]` entry: declared options win over the table by kind."""
    table = _licence_table()
    entry = dict(table["kinds"].get(source.get("kind", ""), table["default"]))
    options = source.get("options") or {}
    declared = options.get("licence")
    if declared:
        entry["licence"] = str(declared)
        known = str(declared).lower()
        entry["hf_license"] = known if known in table["hf_license_ids"] else "other"
        entry["terms"] = f"Declared by the source: {declared}."
        entry["url"] = options.get("licence_url") or None
    elif options.get("licence_url"):
        entry["url"] = options["licence_url"]
    entry["name"] = source.get("name", "")
    entry["kind"] = source.get("kind", "")
    entry["limit"] = source.get("limit")
    return entry


def _size_category(n: int) -> str:
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
              (10_000_000, "1M<n<10M")]
    return next((label for bound, label in bounds if n < bound), "10M<n<100M")


def front_matter(build: Path | str | BuildDir, manifest: Manifest, licences: list[dict[str, Any]]) -> dict[str, Any]:
    """The Hugging Face card metadata: licence, task categories, and one config with each split's files."""
    ids = list(dict.fromkeys(lic["hf_license"] for lic in licences)) or ["unknown"]
    front: dict[str, Any] = {"license": ids[0] if len(ids) == 1 else ids}
    if "other" in ids:
        others = [lic for lic in licences if lic["hf_license"] == "other"]
        front["license_name"] = "; ".join(f"{lic['name']}: {lic['licence']}" for lic in others)
        links = [lic["url"] for lic in others if lic.get("url")]
        if links:
            front["license_link"] = links[0]
    present = BuildDir(build).splits()
    splits = [s for s in manifest.splits if s in present]
    front.update({
        "language": ["en"],
        "pretty_name": f"FEA instructions ({', '.join(lic['name'] for lic in licences) or 'no source'})",
        "task_categories": TASK_CATEGORIES,
        "tags": TAGS,
        "size_categories": [_size_category(manifest.counts.rows)],
        "configs": [{
            "config_name": "default",
            "data_files": [{"split": s, "path": f"data/{s}-*.parquet"} for s in splits],
        }],
    })
    return front


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return lines + [""]


def _intro(manifest: Manifest) -> list[str]:
    counts = manifest.counts
    created = datetime.fromtimestamp(manifest.created_unix, UTC).strftime("%Y-%m-%d %H:%M UTC")
    versions = manifest.versions
    return [
        "# FEA instruction dataset",
        "",
        "Facial emotion analysis (FEA) instructions built by `fea-pipeline`: aligned face crops "
        f"({manifest.crop_size or '?'} px), measured facial action units (AUs) with their provenance, an "
        "FE-AU consistency score, and instruction/answer conversations (`<image>` once, in the first user turn) "
        "checked against the labels.",
        "",
        f"Built {created}; params hash `{versions.get('params_hash', '?')}`; "
        f"{counts.rows} rows from {counts.faces} faces.",
        "",
        "## Use",
        "",
        "```python",
        "import datasets",
        'ds = datasets.load_dataset("parquet", data_dir="data")   # from this folder; train / test',
        "```",
        "",
        "Fine-tune an image-text-to-text model on it with `fea train <this folder> --model <model>` and "
        "score it with `fea evaluate <this folder> --model <checkpoint>` (FE accuracy, AU F1).",
        "",
    ]


def _sources(licences: list[dict[str, Any]]) -> list[str]:
    rows = [[f"`{lic['name']}`", lic["kind"], lic["licence"], lic.get("url") or "-", lic["terms"],
             lic["limit"] if lic.get("limit") else "all"] for lic in licences]
    return ["## Sources and licences", "",
            *_table(["source", "kind", "licence", "link", "terms", "items read"], rows),
            "The build inherits the terms of its sources; the pipeline's own code is Apache-2.0.", ""]


def _accounting(stats: BuildStats) -> list[str]:
    c = stats.counts
    lines = ["## Counts and accounting", "",
             f"Every input is either accepted or rejected with a reason: **{c.get('inputs', 0)} inputs = "
             f"{c.get('accepted_inputs', 0)} accepted + {c.get('rejected_inputs', 0)} rejected**; "
             f"{c.get('rows', 0)} rows (one per face and task) from {c.get('faces', 0)} faces.", ""]
    lines += _table(["split", "rows"], [[k, v] for k, v in (c.get("rows_by_split") or {}).items()])
    lines += _face_quality(stats)
    if stats.rejects:
        lines += ["Rejects (`rejects/*.parquet` holds each one with its detail):", ""]
        lines += _table(["stage/reason", "inputs rejected", "reject records", "example"],
                        [[f"{r.stage}/{r.reason}", r.inputs, r.records, r.example] for r in stats.rejects])
    else:
        lines += ["No input was rejected.", ""]
    return lines


def _face_quality(stats: BuildStats) -> list[str]:
    """How the faces were found and how many are low-resolution: columns a trainer can filter on."""
    c, params = stats.counts, stats.manifest.params or {}
    faces = c.get("faces", 0)
    if not faces:
        return []
    low = c.get("faces_low_resolution", 0)
    threshold = (params.get("align") or {}).get("low_resolution_px", "?")
    lines = [f"**{low} of {faces} faces ({low / faces:.1%}) are low-resolution** (`low_resolution`: eyes under "
             f"{threshold} px apart in the source, `face_size_px`; their crops are upsampled). "
             "`detect_attempt` says which detection attempt found each face (`original`: the image as given; "
             "the others changed the image first, see `detect.retries` in the manifest's params):", ""]
    lines += _table(["detect_attempt", "faces"], [[k, v] for k, v in (c.get("faces_by_detect_attempt") or {}).items()])
    return lines


def _labels(stats: BuildStats) -> list[str]:
    table = stats.build.read_rows(["emotion", "split"])
    pairs = Counter(zip(table.column("emotion").to_pylist(), table.column("split").to_pylist(), strict=True)
                    ) if table is not None else Counter()
    by_split: dict[str, dict[str, int]] = {}
    for (emotion, split), n in pairs.items():
        by_split.setdefault(emotion or UNLABELLED, {})[str(split)] = n
    splits = list(stats.rows_by_split)
    faces = stats.faces_by_emotion()
    rows = [[label, faces.get(label, 0), n, *[by_split.get(label, {}).get(s, 0) for s in splits]]
            for label, n in stats.rows_by_emotion.items()]
    lines = ["## Label distribution", "",
             "Emotions (canonical 8; unlabelled faces only carry AU tasks):", ""]
    lines += _table(["emotion", "faces", "rows", *[f"rows in {s}" for s in splits]], rows)
    lines += ["Tasks:", ""]
    lines += _table(["task", "rows"], [[k, v] for k, v in stats.rows_by_task.items()])
    return lines


def _aus(stats: BuildStats) -> list[str]:
    freq = [[au, f"{share:.1%}"] for au, share in stats.au_frequency().items()]
    lines = ["## Action units", "",
             f"Vocabulary ({len(stats.au_vocabulary)}): {', '.join(stats.au_vocabulary)}. "
             f"Intensity: {stats.manifest.au_intensity_scale or '?'}.", "",
             f"Share of the {len(stats.faces)} faces with each AU present:", ""]
    lines += _table(["AU", "faces with AU"], freq)
    lines += _au_accuracy(stats)
    rate, mean = stats.conflict_rate(), stats.mean_consistency()
    if rate is not None and mean is not None:
        lines += [f"FE-AU consistency over {stats.scored_faces()} labelled faces: mean {mean:.2f}; "
                  f"{rate:.1%} flagged as conflicts.", ""]
    return lines


def _au_accuracy(stats: BuildStats) -> list[str]:
    """Per AU, how well the head in use is known to work: its held-out scores when it was learned, else what is
    documented for it, so a trainer can weigh each AU's labels."""
    head = stats.manifest.au_head
    if not head:
        return []
    lines = [f"AU head `{head['name']}@{head['version']}` ({head.get('method')}"
             + (f", fitted on {', '.join(head['fitted_on'])}" if head.get("fitted_on") else "") + "). "
             + f"Known accuracy per AU ({head.get('quality_source') or 'not measured against FACS coding'}):", ""]
    lines += [*head_summary_lines(head), LEVELS_NOTE, ""]
    rows = [[au, head.get("origin", {}).get(au, "?"), *accuracy_cells(head.get("quality", {}).get(au, {}))]
            for au in stats.au_vocabulary]
    lines += _table(ACCURACY_COLUMNS, rows)
    return lines


def _versions(manifest: Manifest) -> list[str]:
    versions = manifest.versions
    rows = [["record schema", manifest.schema_version or "?"]]
    rows += [[k, f"`{v}`"] for k, v in versions.items()]
    for name, model in manifest.models.items():
        rows.append([f"model {name}", f"`{model.get('path', '?')}` sha256 `{model.get('sha256', '?')}`"])
    rows.append(["AU extractor", f"MediaPipe Face Landmarker blendshapes + mesh measures -> AU head "
                                 f"(`{versions.get('au_model')}`)"])
    return ["## AU extractor, versions and parameters", "",
            *_table(["what", "version"], rows),
            "`params_hash` identifies every parameter of the build (`manifest.json` holds them all); "
            "two builds with the same hash and versions contain the same rows.", ""]


def _texts(stats: BuildStats) -> list[str]:
    """Where the answers come from and how they were checked: a trainer should know what is LLM-written."""
    c, llm = stats.counts, stats.manifest.llm
    sources = c.get("rows_by_text_source") or {}
    lines = ["## Answer texts and their checks", "",
             "Every assistant turn is rendered from templates (`templates/`) or, when an LLM was used, written "
             "by it from the labels alone; either way the grounding verifier checked it against the labels "
             "(no absent AU named, no present AU denied, no other emotion named). The row's `text_source`, "
             "`llm_status` and `grounding_verdict` say which.", ""]
    if sources:
        lines += _table(["text source", "rows"], [[k, v] for k, v in sources.items()])
    if llm:
        rate = llm.get("hallucination_rate")
        lines += [f"LLM `{llm.get('model')}`: {'no' if rate is None else f'{rate:.1%} of the'} LLM texts failed the "
                  "check and were replaced by their template text.", ""]
    return lines


def build_limitations(stats: BuildStats) -> list[str]:
    """Limitations of this build's data (size, unlabelled share, missing emotions), then the general ones."""
    notes = []
    faces = len(stats.faces)
    if faces < 1000:
        notes.append(f"Only {faces} faces: enough to test a training set-up, not to train or compare models.")
    unlabelled = stats.faces_by_emotion().get(UNLABELLED, 0)
    if faces and unlabelled:
        notes.append(f"{unlabelled / faces:.0%} of the faces have no emotion label; they carry AU tasks only.")
    missing = [e for e in packaged_emotions().canonical if e not in stats.faces_by_emotion()]
    if missing:
        notes.append(f"No face is labelled {', '.join(missing)}: a model cannot learn them from this build.")
    return notes + LIMITATIONS


def _limitations(stats: BuildStats) -> list[str]:
    return ["## Known limitations", "", *[f"- {item}" for item in build_limitations(stats)], ""]


__all__ = ["write_dataset_card", "source_licence", "front_matter"]
