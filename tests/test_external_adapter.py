"""A researcher's adapter outside the package, named as module:Class in params, builds a dataset."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.config import load_config
from pipeline.sources import SourceError, make_source
from pipeline.sources.demo import demo_corpus_dir

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    for emotion, name in [("surprise", "0-f1-su-ph.jpg"), ("happiness", "single_face.jpg")]:
        (root / emotion).mkdir(parents=True)
        shutil.copy(demo_corpus_dir() / name, root / emotion / name)
    return root


@pytest.fixture
def importable(monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(FIXTURES))
    yield
    sys.modules.pop("external_adapter", None)


@pytest.mark.slow
def test_external_adapter_builds(corpus: Path, tmp_path: Path, importable) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(json.dumps({
        "sources": [{"name": "mine", "kind": "external_adapter:OneFolderSource", "path": str(corpus)}],
        "runner": {"direct_running_mode": "in_memory"},
    }))
    out = tmp_path / "out"
    assert main(["build", "--no-progress", "--no-validate", "--params", str(params), "-o", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["inputs"] == 2 and manifest["counts"]["accepted_inputs"] == 2
    assert set(manifest["counts"]["rows_by_emotion"]) == {"surprise", "happiness"}


def test_bad_adapter_specs_are_clear_errors(importable) -> None:
    config = load_config(None)
    for kind, message in [("no_such_module:X", "cannot load"), ("external_adapter:Nope", "cannot load"),
                          ("json:JSONDecoder", "not a subclass")]:
        source = config.sources[0].model_copy(update={"kind": kind})
        with pytest.raises(SourceError, match=message):
            make_source(source, None)
