"""`fea calibrate`: learn a whole AU head from FACS-coded builds (pipeline/au/fit.py), write it, report it.

    fea calibrate build/ckplus [build/disfa ...] --output my_head.json
    fea build --set au.head=my_head.json ...

The builds must carry corpus AU codes (`au_label_intensity`): the ckplus, disfa, disfaplus, bp4d and
rafau adapters, or the csv/jsonl adapters with the `au_column` option. Per AU the report gives the
coded support, the model chosen for it (a logistic regression, or the base head with its threshold
re-chosen, or as it is: whichever cross-validates best) and its subject-disjoint held-out F1, precision,
recall and correlation; AUs coded too rarely keep the base head's model and say so. Uncoded neutral-labelled
faces (CK+ first frames with `neutral_first_frame=true`) are negatives for every AU, and each AU's threshold
keeps it off all but `--neutral-rate` of them; the report gives the false-AU rate on neutral faces and the
intensity error against the coded FACS levels (A-E), to which each AU's intensity slope is fitted. With
`--views AS_TAKEN REDUCED` (two builds of the same photos, e.g. as taken and cut down to 48 px grey) the learned
scores are also penalised for changing between the two views.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.au.accuracy import head_summary_lines, interval_text
from pipeline.au.fit import AUFit, fit_head
from pipeline.au.head import AUHead
from pipeline.au.training_data import read_faces, read_views


def calibrate(builds: list[str | Path], base_head: Path, output: Path, min_positives: int = 10,
              folds: int = 5, neutral_rate: float = 0.01, neutral_negatives: bool = True,
              name: str = "fea-calibrated", meta: dict[str, Any] | None = None,
              appearance_components: int = 0, views: tuple[str | Path, str | Path] | None = None
              ) -> tuple[AUHead, list[AUFit]]:
    faces = read_faces(builds, neutral_negatives=neutral_negatives, appearance=appearance_components > 0)
    base = AUHead.load(base_head, faces.codes)
    pairs = read_views(*views, appearance=faces.descriptors is not None) if views else None
    head, fits = fit_head(faces, base, name=name, min_positives=min_positives, folds=folds,
                          neutral_rate=neutral_rate, meta=meta, appearance_components=appearance_components,
                          views=pairs)
    head.write(output)
    return head, fits


def report_lines(head: AUHead, fits: list[AUFit]) -> list[str]:
    """A table of the AUs: coded support, held-out scores and the model chosen, or why the base head was kept."""
    lines = [f"{'AU':6}{'coded+':>7}{'coded-':>7}  {'F1':>5} {'F1 95%':>9} {'prec':>5} {'rec':>5} {'corr':>5} "
             f"{'neut':>5} {'lvMAE':>5}  model"]
    models = {"logistic": "learned", "base-threshold": "base head, threshold re-chosen", "base": "base head"}
    for fit in fits:
        if fit.fitted:
            cv = fit.cv
            extra = (f" (C={cv['C']})" if "C" in cv else "") + ("; levels pooled" if "levels_from" in cv else "")
            neutral = f"{cv['neutral_rate']:5.2f}" if "neutral_rate" in cv else f"{'':5}"
            level = f"{cv['intensity_mae']:5.2f}" if "intensity_mae" in cv else f"{'':5}"
            interval = interval_text(head.quality.get(fit.code, {}).get("f1_interval"))
            lines.append(f"{fit.code:6}{fit.positives:7d}{fit.negatives:7d}  {cv['f1']:5.2f} {interval:>9} "
                         f"{cv['precision']:5.2f} {cv['recall']:5.2f} {cv['correlation']:5.2f} {neutral} {level}  "
                         f"{models[fit.kind]}{extra}")
        else:
            lines.append(f"{fit.code:6}{fit.positives:7d}{fit.negatives:7d}  {'':>45}  base head: {fit.reason}")
    lines += head_summary_lines(head.summary())
    meta = head.meta
    lines.append(f"({meta['faces']} faces, {meta['subjects']} subjects, {meta['folds']} subject-disjoint folds; "
                 "F1 95% = its interval over people, neut = share of the neutral faces an AU fires on, "
                 "lvMAE = level error)")
    return lines
