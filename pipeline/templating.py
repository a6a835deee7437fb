"""Instruction templates: load, check at start-up, render deterministically.

One YAML file per task family under `templates/` gives `task`, `version`, `requires` (a subset of
{emotion, aus}), `questions` and `answers` (Jinja strings). Every string is compiled in a sandbox
with StrictUndefined and rendered against built-in example contexts when the library loads, so a
broken template fails at start-up with its file and index, never half-way through a run. The
environment has no loader (a template cannot include, import or extend a file), and a template that
names a private attribute (`__class__`, `_x`) is refused at load even in a branch no example reaches.

Templates never contain `<image>`: `render` puts it once, at the start of the first user turn.
The phrasing (question index, answer index) is picked from sha256(choice_key): a rebuild gives the
same text, a new seed (part of the key) gives a new mix.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import yaml
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from pipeline.record import Sample

IMAGE_TOKEN = "<image>"
REQUIREMENTS = ("emotion", "aus")
MIN_QUESTIONS = 6
MIN_ANSWERS = 4
# Level words for intensity bins 1..5 of the 0-5 AU scale (FACS A..E).
LEVELS = ("trace", "slight", "marked", "severe", "maximum")
_KEYS = {"task", "version", "requires", "questions", "answers", "description"}


class TemplateError(Exception):
    """A template file is invalid, or a template fails to compile or render."""


class TemplateSecurityError(TemplateError, SecurityError):
    """A template tried something the sandbox forbids (e.g. `''.__class__`)."""


# ----------------------------------------------------------------------------- vocabulary & context


def intensity_level(value: float) -> str:
    """0-5 intensity -> level word of its bin 1..5 (rounded, clamped: below 1.5 is 'trace')."""
    bin_ = min(5, max(1, int(value + 0.5)))
    return LEVELS[bin_ - 1]


def _au_entry(vocab_row: dict[str, Any], intensity: float) -> dict[str, Any]:
    return {
        "code": vocab_row["code"],
        "number": vocab_row["number"],
        "name": vocab_row["name"],
        "region": vocab_row["region"],
        "intensity": round(float(intensity), 1),
        "level": intensity_level(float(intensity)),
    }


def build_context(sample: Sample, vocabulary: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The variables a template sees for one face.

    aus: present AUs, strongest first; evidence_aus: those of `sample.evidence_aus` that are present
    (an answer never names an AU that was not observed).
    """
    index = {row["code"]: i for i, row in enumerate(vocabulary)}
    intensity = sample.au_intensity
    if intensity is not None and len(intensity) != len(vocabulary):
        raise ValueError(f"au_intensity has {len(intensity)} values, vocabulary has {len(vocabulary)}")
    aus = []
    for code in dict.fromkeys(sample.au_present):
        if code not in index:
            raise ValueError(f"present AU {code!r} is not in the AU vocabulary")
        i = index[code]
        aus.append(_au_entry(vocabulary[i], float(intensity[i]) if intensity is not None else 0.0))
    aus.sort(key=lambda au: (-au["intensity"], au["number"]))
    by_code = {au["code"]: au for au in aus}
    evidence = [by_code[c] for c in dict.fromkeys(sample.evidence_aus) if c in by_code]
    consistency = sample.fe_au_consistency
    return {
        "emotion": sample.item.emotion,
        "aus": aus,
        "au_codes": [au["code"] for au in aus],
        "evidence_aus": evidence,
        "consistency": round(float(consistency), 2) if consistency is not None else None,
        "conflict": bool(sample.fe_au_conflict),
    }


# ----------------------------------------------------------------------------- template filters


def join_and(items: Iterable[Any]) -> str:
    """['a', 'b', 'c'] -> 'a, b and c'."""
    words = [str(x) for x in items]
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def au_text(aus: Iterable[dict[str, Any]], levels: bool = False) -> str:
    """AU dicts -> 'AU12 (lip corner puller)' or, with levels, 'AU12 (lip corner puller, marked)'."""
    return join_and(
        f"{au['code']} ({au['name']}, {au['level']})" if levels else f"{au['code']} ({au['name']})"
        for au in aus
    )


def _example_aus(*specs: tuple[str, int, str, str, float]) -> list[dict[str, Any]]:
    return [_au_entry({"code": c, "number": n, "name": nm, "region": r}, x) for c, n, nm, r, x in specs]


_AU6 = ("AU6", 6, "cheek raiser", "upper", 3.2)
_AU12 = ("AU12", 12, "lip corner puller", "lower", 4.1)
_AU25 = ("AU25", 25, "lips part", "lower", 1.2)
_AU4 = ("AU4", 4, "brow lowerer", "upper", 2.4)
_AU1 = ("AU1", 1, "inner brow raiser", "upper", 1.9)

# Load-time check contexts: every branch a template can reasonably take.
EXAMPLE_CONTEXTS: tuple[dict[str, Any], ...] = (
    {
        "emotion": "happiness",
        "aus": _example_aus(_AU12, _AU6, _AU25),
        "evidence_aus": _example_aus(_AU12, _AU6),
        "consistency": 1.0,
        "conflict": False,
    },
    {
        "emotion": "sadness",
        "aus": _example_aus(_AU4),
        "evidence_aus": _example_aus(_AU4),
        "consistency": 0.33,
        "conflict": True,
    },
    {
        "emotion": "anger",
        "aus": _example_aus(_AU12, _AU25),
        "evidence_aus": [],
        "consistency": 0.0,
        "conflict": True,
    },
    {"emotion": "fear", "aus": [], "evidence_aus": [], "consistency": 0.0, "conflict": True},
    {"emotion": "neutral", "aus": [], "evidence_aus": [], "consistency": 1.0, "conflict": False},
    {
        "emotion": "neutral",
        "aus": _example_aus(_AU12, _AU6, _AU4, _AU1),
        "evidence_aus": [],
        "consistency": 0.0,
        "conflict": True,
    },
    {
        "emotion": None,
        "aus": _example_aus(_AU4, _AU1),
        "evidence_aus": [],
        "consistency": None,
        "conflict": False,
    },
    {"emotion": None, "aus": [], "evidence_aus": [], "consistency": None, "conflict": False},
)
for _ctx in EXAMPLE_CONTEXTS:
    _ctx["au_codes"] = [au["code"] for au in _ctx["aus"]]


# ----------------------------------------------------------------------------- library


@dataclass(frozen=True)
class TaskTemplates:
    task: str
    version: str
    requires: tuple[str, ...]
    file: str
    questions: tuple[jinja2.Template, ...]
    answers: tuple[jinja2.Template, ...]


def make_environment() -> jinja2.Environment:
    env = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)
    env.filters["join_and"] = join_and
    env.filters["au_text"] = au_text
    return env


_LOADING_TAGS = {nodes.Include: "include", nodes.Import: "import", nodes.FromImport: "from", nodes.Extends: "extends"}


def _private_name(node: nodes.Node | None) -> bool:
    return isinstance(node, nodes.Const) and isinstance(node.value, str) and node.value.startswith("_")


def check_static(env: jinja2.Environment, source: str) -> str | None:
    """Why a template is unsafe, read from its syntax tree (None if it is not): it loads another template
    (include/import/extends: there is no loader, templates are self-contained) or names a private
    attribute (`x.__class__`, `x['_y']`, `x|attr('_y')`). The sandbox refuses both when they run; this
    refuses them at load even in a branch the example contexts do not reach."""
    tree = env.parse(source)
    loading = next(tree.find_all(tuple(_LOADING_TAGS)), None)
    if loading is not None:
        return f"{{% {_LOADING_TAGS[type(loading)]} %}} is not allowed: templates cannot load other files"
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter)):
        if isinstance(node, nodes.Getattr) and node.attr.startswith("_"):
            return f"access to private attribute {node.attr!r} is not allowed"
        if isinstance(node, nodes.Getitem) and _private_name(node.arg):
            return f"access to private item {node.arg.value!r} is not allowed"
        if isinstance(node, nodes.Filter) and node.name == "attr" and node.args and _private_name(node.args[0]):
            return f"access to private attribute {node.args[0].value!r} is not allowed"
    return None


def _tidy(text: str) -> str:
    """Collapse runs of spaces and drop blank lines left by template tags."""
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def _render(template: jinja2.Template, context: dict[str, Any], where: str) -> str:
    try:
        text = _tidy(template.render(**context))
    except SecurityError as exc:
        raise TemplateSecurityError(f"{where}: {exc}") from exc
    except jinja2.TemplateError as exc:
        raise TemplateError(f"{where}: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - a filter or comparison blowing up is still a template bug
        raise TemplateError(f"{where}: {type(exc).__name__}: {exc}") from exc
    if not text:
        raise TemplateError(f"{where}: renders to empty text")
    if IMAGE_TOKEN in text:
        raise TemplateError(f"{where}: contains {IMAGE_TOKEN}; the renderer adds it")
    return text


def _applies(requires: Sequence[str], context: dict[str, Any]) -> bool:
    return not ("emotion" in requires and context["emotion"] is None)


class TemplateLibrary:
    """All task templates of one templates folder, compiled and checked."""

    def __init__(self, templates_dir: str | Path) -> None:
        self.dir = Path(templates_dir)
        files = sorted(self.dir.glob("*.yaml"))
        if not files:
            raise TemplateError(f"no *.yaml templates in {self.dir}")
        self.env = make_environment()
        digest = hashlib.sha256()
        self.templates: dict[str, TaskTemplates] = {}
        for path in files:
            raw = path.read_bytes()
            digest.update(path.name.encode() + b"\0" + raw + b"\0")
            spec = self._load_file(path, raw)
            if spec.task in self.templates:
                raise TemplateError(f"{path.name}: task {spec.task!r} already defined")
            self.templates[spec.task] = spec
        self.version: str = digest.hexdigest()[:12]

    @property
    def tasks(self) -> list[str]:
        return sorted(self.templates)

    def requires(self, task: str) -> tuple[str, ...]:
        return self._get(task).requires

    def counts(self, task: str) -> tuple[int, int]:
        """(number of questions, number of answers) of a task."""
        spec = self._get(task)
        return len(spec.questions), len(spec.answers)

    def _get(self, task: str) -> TaskTemplates:
        if task not in self.templates:
            raise KeyError(f"unknown task {task!r}; templates define {self.tasks}")
        return self.templates[task]

    def _load_file(self, path: Path, raw: bytes) -> TaskTemplates:
        name = path.name
        try:
            data = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise TemplateError(f"{name}: invalid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise TemplateError(f"{name}: top level must be a mapping")
        unknown = set(data) - _KEYS
        if unknown:
            raise TemplateError(f"{name}: unknown keys {sorted(unknown)}")
        task, version = data.get("task"), data.get("version")
        if not isinstance(task, str) or task != path.stem:
            raise TemplateError(f"{name}: `task` must be the file's stem {path.stem!r}, got {task!r}")
        if version is None or str(version).strip() == "":
            raise TemplateError(f"{name}: `version` is required")
        requires = data.get("requires") or []
        if not isinstance(requires, list) or any(r not in REQUIREMENTS for r in requires):
            raise TemplateError(f"{name}: `requires` must be a list among {list(REQUIREMENTS)}")
        compiled: dict[str, tuple[jinja2.Template, ...]] = {}
        for kind, minimum in (("questions", MIN_QUESTIONS), ("answers", MIN_ANSWERS)):
            strings = data.get(kind)
            if not isinstance(strings, list) or len(strings) < minimum:
                raise TemplateError(f"{name}: `{kind}` must be a list of at least {minimum} strings")
            items = []
            for i, source in enumerate(strings):
                where = f"{name}: {kind}[{i}]"
                if not isinstance(source, str) or not source.strip():
                    raise TemplateError(f"{where}: must be a non-empty string")
                try:
                    template = self.env.from_string(source)
                except jinja2.TemplateSyntaxError as exc:
                    raise TemplateError(f"{where}: syntax error line {exc.lineno}: {exc.message}") from exc
                unsafe = check_static(self.env, source)
                if unsafe:
                    raise TemplateSecurityError(f"{where}: {unsafe}")
                for context in EXAMPLE_CONTEXTS:
                    if _applies(requires, context):
                        _render(template, context, where)
                items.append(template)
            compiled[kind] = tuple(items)
        return TaskTemplates(
            task, str(version), tuple(requires), name, compiled["questions"], compiled["answers"]
        )

    def render_choice(
        self, task: str, context: dict[str, Any], question: int, answer: int
    ) -> tuple[str, list[dict[str, str]]]:
        """Render one given phrasing: (template_id, [user turn, assistant turn])."""
        spec = self._get(task)
        q_text = _render(spec.questions[question], context, f"{spec.file}: questions[{question}]")
        a_text = _render(spec.answers[answer], context, f"{spec.file}: answers[{answer}]")
        template_id = f"{task}/q{question}a{answer}@{spec.version}"
        return template_id, [
            {"role": "user", "content": f"{IMAGE_TOKEN}\n{q_text}"},
            {"role": "assistant", "content": a_text},
        ]

    def render(self, task: str, context: dict[str, Any], choice_key: str) -> tuple[str, list[dict[str, str]]]:
        """Render `task` with the phrasing picked from sha256(choice_key) (0-based indices in the id)."""
        n_questions, n_answers = self.counts(task)
        h = int(hashlib.sha256(choice_key.encode()).hexdigest(), 16)
        return self.render_choice(task, context, h % n_questions, (h // n_questions) % n_answers)
