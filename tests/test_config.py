"""params.yaml -> Config: defaults, `--set key.path=value` overrides parsed as YAML, every invalid input a
ConfigError with a readable message, relative paths anchored at the params file, and the params hash."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from pipeline.config import DEFAULT_PARAMS, Config, ConfigError, load_config, set_dotted
from pipeline.domain.data import PROJECT_ROOT


def write_params(tmp_path, text: str):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


# --- defaults ----------------------------------------------------------------------------------------


def test_project_params_load():
    config = load_config(DEFAULT_PARAMS)
    assert config.base_dir == PROJECT_ROOT
    assert [s.kind for s in config.sources] == ["demo"]
    assert config.align.crop_size == 336
    assert abs(sum(config.split.ratios.values()) - 1) < 1e-9
    assert config.validate_.suite.endswith(".json")
    for rel in (config.au.head, config.au.measures, config.au.vocabulary, config.synergy.prototypes,
                config.render.templates_dir):
        assert config.resolve_input(rel).exists(), rel


def test_builtin_defaults_need_no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./params.yaml here: the project's file is used
    assert load_config().model_dump() == load_config(DEFAULT_PARAMS).model_dump()
    bare = Config()
    assert bare.detect.multi_face == "largest" and bare.synergy.conflict_policy == "flag"


def test_params_in_working_directory_win(tmp_path, monkeypatch):
    write_params(tmp_path, "align: {crop_size: 128}\n")
    monkeypatch.chdir(tmp_path)
    config = load_config()
    assert config.align.crop_size == 128 and config.base_dir == tmp_path.resolve()


def test_empty_params_file_gives_defaults(tmp_path):
    config = load_config(write_params(tmp_path, "# nothing set\n"))
    assert config.model_dump() == Config().model_dump()


# --- overrides ---------------------------------------------------------------------------------------


def test_override_is_parsed_as_yaml():
    config = load_config(DEFAULT_PARAMS, ["align.crop_size=448", "synergy.conflict_threshold=0.5",
                                          "detect.model_path=null", "output.overwrite=false",
                                          "render.mix={fe_recognition: 2, description: 0}"])
    assert config.align.crop_size == 448 and isinstance(config.align.crop_size, int)
    assert config.synergy.conflict_threshold == 0.5
    assert config.detect.model_path is None
    assert config.output.overwrite is False
    assert config.render.mix == {"fe_recognition": 2.0, "description": 0.0}


def test_override_value_may_contain_equals_and_spaces():
    config = load_config(DEFAULT_PARAMS, [" output.dir = build/a=b "])
    assert config.output.dir == "build/a=b"


def test_override_creates_missing_sections(tmp_path):
    config = load_config(write_params(tmp_path, "{}\n"), ["split.ratios={train: 0.5, val: 0.25, test: 0.25}"])
    assert config.split.ratios == {"train": 0.5, "val": 0.25, "test": 0.25}


def test_override_by_alias():
    assert load_config(DEFAULT_PARAMS, ["validate.min_accept_rate=0.9"]).validate_.min_accept_rate == 0.9


def test_override_replaces_sources_list():
    config = load_config(DEFAULT_PARAMS, ["sources=[{name: w, kind: csv, path: data, limit: 5}]"])
    assert [(s.name, s.kind, s.path, s.limit) for s in config.sources] == [("w", "csv", "data", 5)]


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("align.crop_sise=448", "align.crop_sise"),  # typo'd key
        ("alignment.crop_size=448", "alignment"),  # unknown section
        ("align.crop_size=big", "align.crop_size"),  # wrong type
        ("align.crop_size=8", "align.crop_size"),  # out of range
        ("detect.multi_face=some", "detect.multi_face"),  # not one of the choices
        ("synergy.conflict_policy=drop", "synergy.conflict_policy"),
        ("split.ratios={train: 0.5, test: 0.2}", "split.ratios"),  # does not sum to 1
        ("split.ratios={train: 1.2, test: -0.2}", "split.ratios"),  # negative
        ("render.mix={fe_recognition: 0}", "render.mix"),  # no positive weight
        ("sources=[{name: x}]", "sources"),  # kind missing
        ("align.crop_size=", "align.crop_size"),  # empty value is null
    ],
)
def test_invalid_override_is_a_config_error(override, fragment):
    with pytest.raises(ConfigError) as info:
        load_config(DEFAULT_PARAMS, [override])
    assert fragment in str(info.value)


def test_override_without_equals():
    with pytest.raises(ConfigError, match="key.path=value"):
        load_config(DEFAULT_PARAMS, ["align.crop_size"])


def test_override_into_a_scalar():
    with pytest.raises(ConfigError, match="not a section"):
        load_config(DEFAULT_PARAMS, ["align.crop_size.deep=1"])


def test_override_with_invalid_yaml_is_a_config_error():
    with pytest.raises(ConfigError, match="render.mix"):
        load_config(DEFAULT_PARAMS, ["render.mix={fe_recognition: "])


def test_set_dotted():
    data: dict = {"a": {"b": 1}}
    set_dotted(data, "a.c.d", 2)
    set_dotted(data, "e", 3)
    assert data == {"a": {"b": 1, "c": {"d": 2}}, "e": 3}


# --- params files ------------------------------------------------------------------------------------


def test_unknown_key_in_params_file(tmp_path):
    with pytest.raises(ConfigError, match="decode.max_pixel"):
        load_config(write_params(tmp_path, "decode:\n  max_pixel: 10\n"))


def test_params_file_not_found(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yaml")


def test_params_file_not_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="mapping"):
        load_config(write_params(tmp_path, "- a\n- b\n"))


def test_params_file_with_broken_yaml(tmp_path):
    with pytest.raises(ConfigError, match="YAML"):
        load_config(write_params(tmp_path, "align: {crop_size: 336\n"))


def test_relative_paths_anchor_at_params_folder(tmp_path):
    (tmp_path / "my_schemas").mkdir()
    (tmp_path / "my_schemas" / "map.json").write_text("{}")
    config = load_config(write_params(tmp_path, "au: {head: my_schemas/map.json}\noutput: {dir: out}\n"))
    assert config.base_dir == tmp_path.resolve()
    assert config.paths.au_head == (tmp_path / "my_schemas" / "map.json").resolve()
    assert config.paths.output_dir == (tmp_path / "out").resolve()
    # Project files a params file elsewhere does not name fall back to the project's copies.
    assert config.paths.au_vocabulary == PROJECT_ROOT / "schemas" / "au_vocabulary.csv"
    assert config.paths.templates_dir == PROJECT_ROOT / "templates"
    assert config.resolve_input(tmp_path / "abs") == tmp_path / "abs"
    assert config.resolve_output(tmp_path / "abs") == tmp_path / "abs"


def test_outputs_never_fall_back_to_the_package(tmp_path):
    """What a build writes stays beside the params file even where the package has a folder of that name
    (after `make demo`, PROJECT_ROOT/build/demo exists): inputs may fall back, outputs may not."""
    assert (PROJECT_ROOT / "schemas").is_dir() and (PROJECT_ROOT / "templates").is_dir()  # names the package has
    config = load_config(write_params(tmp_path, "output: {dir: schemas}\nllm: {cache_dir: templates}\n"))
    assert config.resolve_input("schemas") == PROJECT_ROOT / "schemas"
    assert config.resolve_output(config.output.dir) == tmp_path.resolve() / "schemas"
    assert config.resolve_output(config.llm.cache_dir) == tmp_path.resolve() / "templates"


def test_the_packages_own_params_write_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./params.yaml: the package's params.yaml is read
    config = load_config()
    assert config.base_dir == PROJECT_ROOT
    assert config.resolve_output(config.output.dir) == tmp_path.resolve() / "build" / "demo"
    assert config.resolve_output(config.llm.cache_dir) == tmp_path.resolve() / ".fea_cache" / "llm"
    assert Config().resolve_output("out") == tmp_path.resolve() / "out"  # a Config made in code: the same


def test_paths_are_resolved_once(tmp_path, monkeypatch):
    """Consumers read one resolved set of locations: the working directory of the first use decides where the
    package's own params write, and a later change of directory moves nothing."""
    monkeypatch.chdir(tmp_path)
    config = load_config()
    paths = config.paths
    assert paths.output_dir == tmp_path.resolve() / "build" / "demo" and paths.sources == (None,)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert config.paths is paths and config.paths.output_dir == tmp_path.resolve() / "build" / "demo"


@pytest.mark.parametrize("url", ["s3://bucket/x", "gs://bucket/x", "hf://datasets/me/x", "file:///tmp/x"])
def test_the_llm_cache_must_be_a_local_folder(url):
    with pytest.raises(ConfigError) as info:
        load_config(DEFAULT_PARAMS, [f"llm.cache_dir={url}"])
    message = str(info.value)
    assert message.startswith(f"invalid params (llm.cache_dir): cannot write to {url}") and "\n" not in message


def test_a_build_output_may_be_an_object_storage_url():
    config = load_config(DEFAULT_PARAMS, ["output.dir=s3://bucket/releases/v1"])
    out = config.resolve_output(config.output.dir)
    assert str(out) == "s3://bucket/releases/v1" and not isinstance(out, Path)  # a UPath: no local folder
    assert load_config(DEFAULT_PARAMS, ["output.dir=file:///tmp/x"]).output.dir == "/tmp/x"


@pytest.mark.skipif(importlib.util.find_spec("gcsfs") is not None, reason="gcsfs is installed here")
@pytest.mark.parametrize(("url", "why"), [
    ("gs://bucket/x", "no filesystem for gs:// is installed"),  # fsspec's: pip install 'fea-pipeline[gcs]'
    ("hf://datasets/me/x", "Beam has no filesystem for hf://"),  # fsspec has one, Beam's sink cannot write it
])
def test_an_output_url_without_a_filesystem_is_refused_in_one_line(url, why):
    with pytest.raises(ConfigError) as info:
        load_config(DEFAULT_PARAMS, [f"output.dir={url}"])
    message = str(info.value)
    assert message.startswith("invalid params (output.dir): cannot ") and url in message and why in message
    assert "\n" not in message
    with pytest.raises(ConfigError, match=why):
        Config().resolve_output(url)


# --- params hash -------------------------------------------------------------------------------------


def test_params_hash_is_stable():
    assert load_config(DEFAULT_PARAMS).params_hash() == load_config(DEFAULT_PARAMS).params_hash()
    assert len(load_config(DEFAULT_PARAMS).params_hash()) == 16


@pytest.mark.parametrize(
    "override", ["align.crop_size=448", "detect.multi_face=all", "split.seed=1", "synergy.conflict_threshold=0.5",
                 "render.seed=3", "sources=[{name: w, kind: csv, path: x}]"]
)
def test_params_hash_follows_what_shapes_the_output(override):
    assert load_config(DEFAULT_PARAMS, [override]).params_hash() != load_config(DEFAULT_PARAMS).params_hash()


@pytest.mark.parametrize("override", ["output.dir=elsewhere", "output.overwrite=false", "runner.num_workers=8",
                                      "runner.direct_running_mode=in_memory"])
def test_params_hash_ignores_where_and_how_it_runs(override):
    assert load_config(DEFAULT_PARAMS, [override]).params_hash() == load_config(DEFAULT_PARAMS).params_hash()


def test_params_hash_ignores_params_file_location(tmp_path):
    copy = write_params(tmp_path, DEFAULT_PARAMS.read_text())
    assert load_config(copy).params_hash() == load_config(DEFAULT_PARAMS).params_hash()
