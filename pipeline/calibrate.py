"""`fea calibrate`: learn a whole AU head from FACS-coded builds (pipeline/au/fit.py), write it, report it.

    fea calibrate build/ckplus [build/disfa ...] --output my_head.json
    fea build --set au.head=my_head.json ...

The builds must carry corpus AU codes (`au_label_intensity`): the ckplus, disfa, disfaplus, bp4d and
rafau adapters, or the csv/jsonl adapters with the `au_column` option. Per AU the report gives the
coded support, the model chosen for it (a logistic regression, or the base head with its threshold
re-chosen, or as it is: whichever cross-validates best) and its subject-disjoint held-out F1, precision,
recall and correlation; AUs coded too rarely keep the base head's model and say so.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.au.fit import AUFit, fit_head
from pipeline.au.head import AUHead
from pipeline.au.training_data import read_faces


def calibrate(builds: list[str | Path], base_head: Path, output: Path, min_positives: int = 10,
              folds: int = 5) -> tuple[AUHead, list[AUFit]]:
    faces = read_faces(builds)
    base = AUHead.load(base_head, faces.codes)
    head, fits = fit_head(faces, base, min_positives=min_positives, folds=folds)
    head.write(output)
    return head, fits


def report_lines(head: AUHead, fits: list[AUFit]) -> list[str]:
    """A table of the AUs: coded support, held-out scores and the model chosen, or why the base head was kept."""
    lines = [f"{'AU':6}{'coded+':>7}{'coded-':>7}  {'F1':>5} {'prec':>5} {'rec':>5} {'corr':>5}  model"]
    models = {"logistic": "learned", "base-threshold": "base head, threshold re-chosen", "base": "base head"}
    for fit in fits:
        if fit.fitted:
            cv = fit.cv
            extra = f" (C={cv['C']})" if "C" in cv else ""
            lines.append(f"{fit.code:6}{fit.positives:7d}{fit.negatives:7d}  {cv['f1']:5.2f} {cv['precision']:5.2f} "
                         f"{cv['recall']:5.2f} {cv['correlation']:5.2f}  {models[fit.kind]}{extra}")
        else:
            lines.append(f"{fit.code:6}{fit.positives:7d}{fit.negatives:7d}  {'':>23}  base head: {fit.reason}")
    scored = [f.cv["f1"] for f in fits if f.fitted]
    if scored:
        lines.append(f"mean held-out F1 over the {len(scored)} coded AUs: {sum(scored) / len(scored):.3f} "
                     f"({head.meta['faces']} faces, {head.meta['subjects']} subjects, {head.meta['folds']} folds)")
    return lines
