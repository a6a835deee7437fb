"""The template library: load the task templates, check them at start-up, render deterministically
(see the package docstring)."""

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

from pipeline.config import ConfigError
from pipeline.knowledge import Knowledge, packaged
from pipeline.templating.context import example_contexts

IMAGE_TOKEN = "<image>"
# emotion: the face has a label; aus: AUs were measured; conflict: the label and the AUs disagree.
REQUIREMENTS = ("emotion", "aus", "conflict")
MIN_QUESTIONS = 6
MIN_ANSWERS = 4
_KEYS = {"task", "version", "requires", "questions", "answers", "turns", "description"}
_TURN_KEYS = {"questions", "answers"}


class TemplateError(Exception):
    """A template file is invalid, or a template fails to compile or render."""


class TemplateSecurityError(TemplateError, SecurityError):
    """A template tried something the sandbox forbids (e.g. `''.__class__`)."""


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


def ungraded_note(aus: Sequence[dict[str, Any]], also: bool = False) -> str:
    """The present AUs whose levels the AU head does not support, said as present without a level:
    'AU4 (brow lowerer) is active; its intensity is left ungraded, as the AU extractor's levels for it are not
    reliable enough.' With `also` (after the graded AUs' levels) ' AU4 (brow lowerer) is also active; ...',
    space included. Empty for no AUs."""
    if not aus:
        return ""
    one = len(aus) == 1
    return (f"{' ' if also else ''}{au_text(aus)} {'is' if one else 'are'}{' also' if also else ''} active; "
            f"{'its' if one else 'their'} intensity is left ungraded, as the AU extractor's levels for "
            f"{'it' if one else 'them'} are not reliable enough.")


# ----------------------------------------------------------------------------- the library


@dataclass(frozen=True)
class Turn:
    """One user question and the assistant's answer: the phrasings to pick from."""

    questions: tuple[jinja2.Template, ...]
    answers: tuple[jinja2.Template, ...]


@dataclass(frozen=True)
class TaskTemplates:
    task: str
    version: str
    requires: tuple[str, ...]
    file: str
    turns: tuple[Turn, ...]

    @property
    def questions(self) -> tuple[jinja2.Template, ...]:
        return self.turns[0].questions

    @property
    def answers(self) -> tuple[jinja2.Template, ...]:
        return self.turns[0].answers


def make_environment() -> jinja2.Environment:
    env = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)
    env.filters["join_and"] = join_and
    env.filters["au_text"] = au_text
    env.filters["ungraded_note"] = ungraded_note
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
    return not (("emotion" in requires and context["emotion"] is None)
                or ("conflict" in requires and not context["conflict"]))


# Compiled libraries of this process, by (template sources, knowledge): compiled Jinja templates are
# read-only once built, so the copies a worker unpickles share them.
_COMPILED: dict[tuple[str, str], tuple[jinja2.Environment, dict[str, Any], str]] = {}


class TemplateLibrary:
    """All task templates of one templates folder, compiled and checked against the example contexts of
    `knowledge` (the packaged knowledge by default), whose vocabulary, emotions and prototypes the contexts of
    real faces are built from too (`build_context`).

    Built once, in the driver; a copy pickled to a worker is compiled again from the same file contents there
    (compiled Jinja templates do not pickle), without repeating the checks the driver made."""

    def __init__(self, templates_dir: str | Path, knowledge: Knowledge | None = None) -> None:
        self.dir = Path(templates_dir)
        files = sorted(self.dir.glob("*.yaml"))
        if not files:
            raise TemplateError(f"no *.yaml templates in {self.dir}")
        self.knowledge = knowledge or packaged()
        self._compile({path.name: path.read_bytes() for path in files}, check=True)

    def _compile(self, sources: dict[str, bytes], check: bool) -> None:
        self._sources = sources
        self._examples = example_contexts(self.knowledge) if check else ()
        self.env = make_environment()
        digest = hashlib.sha256()
        self.templates: dict[str, TaskTemplates] = {}
        for name, raw in sources.items():
            digest.update(name.encode() + b"\0" + raw + b"\0")
            spec = self._load_file(self.dir / name, raw)
            if spec.task in self.templates:
                raise TemplateError(f"{name}: task {spec.task!r} already defined")
            self.templates[spec.task] = spec
        self._digest = digest.hexdigest()
        self.version: str = self._digest[:12]

    def __getstate__(self) -> dict[str, Any]:
        return {"dir": self.dir, "knowledge": self.knowledge, "sources": self._sources, "digest": self._digest}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Beam unpickles a DoFn for every bundle processor it makes, many per worker: compile once per process.
        self.dir, self.knowledge = state["dir"], state["knowledge"]
        key = (state["digest"], self.knowledge.fingerprint)
        compiled = _COMPILED.get(key)
        if compiled is None:
            self._compile(state["sources"], check=False)
            _COMPILED[key] = (self.env, self.templates, self.version)
        else:
            self._sources, self._examples, self._digest = state["sources"], (), state["digest"]
            self.env, self.templates, self.version = compiled

    def check_mix(self, mix: Iterable[str]) -> None:
        """A ConfigError naming the tasks of `mix` (render.mix) that have no templates."""
        unknown = sorted(set(mix) - set(self.templates))
        if unknown:
            raise ConfigError(f"render.mix names tasks without templates: {unknown}; have {self.tasks}")

    @property
    def tasks(self) -> list[str]:
        return sorted(self.templates)

    def requires(self, task: str) -> tuple[str, ...]:
        return self._get(task).requires

    def counts(self, task: str) -> tuple[int, int]:
        """(number of questions, number of answers) of a task's first turn."""
        spec = self._get(task)
        return len(spec.questions), len(spec.answers)

    def turn_counts(self, task: str) -> list[tuple[int, int]]:
        """(number of questions, number of answers) of each turn of a task."""
        return [(len(t.questions), len(t.answers)) for t in self._get(task).turns]

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
        single = "questions" in data or "answers" in data
        if single == ("turns" in data):
            raise TemplateError(f"{name}: give `questions` and `answers` (one turn) or `turns`, exactly one of the two")
        if single:
            turns = [self._load_turn(name, "", data, requires)]
        else:
            raw_turns = data["turns"]
            if not isinstance(raw_turns, list) or len(raw_turns) < 2:
                raise TemplateError(f"{name}: `turns` must be a list of at least 2 {{questions, answers}} mappings")
            turns = []
            for t, turn in enumerate(raw_turns):
                if not isinstance(turn, dict) or set(turn) != _TURN_KEYS:
                    raise TemplateError(f"{name}: turns[{t}] must be a mapping with exactly {sorted(_TURN_KEYS)}")
                turns.append(self._load_turn(name, f"turns[{t}].", turn, requires))
        return TaskTemplates(task, str(version), tuple(requires), name, tuple(turns))

    def _load_turn(self, name: str, prefix: str, data: dict[str, Any], requires: Sequence[str]) -> Turn:
        compiled: dict[str, tuple[jinja2.Template, ...]] = {}
        for kind, minimum in (("questions", MIN_QUESTIONS), ("answers", MIN_ANSWERS)):
            strings = data.get(kind)
            if not isinstance(strings, list) or len(strings) < minimum:
                raise TemplateError(f"{name}: `{prefix}{kind}` must be a list of at least {minimum} strings")
            items = []
            for i, source in enumerate(strings):
                where = f"{name}: {prefix}{kind}[{i}]"
                if not isinstance(source, str) or not source.strip():
                    raise TemplateError(f"{where}: must be a non-empty string")
                try:
                    template = self.env.from_string(source)
                except jinja2.TemplateSyntaxError as exc:
                    raise TemplateError(f"{where}: syntax error line {exc.lineno}: {exc.message}") from exc
                unsafe = check_static(self.env, source)
                if unsafe:
                    raise TemplateSecurityError(f"{where}: {unsafe}")
                for context in self._examples:
                    if _applies(requires, context):
                        _render(template, context, where)
                items.append(template)
            compiled[kind] = tuple(items)
        return Turn(compiled["questions"], compiled["answers"])

    def render_turns(
        self, task: str, context: dict[str, Any], choices: Sequence[tuple[int, int]]
    ) -> tuple[str, list[dict[str, str]]]:
        """Render given phrasings, one (question, answer) pair per turn: (template_id, conversation).

        The id records every turn's choice: `task/q1a2@v` for one turn, `task/q1a2-q0a3@v` for two.
        """
        spec = self._get(task)
        if len(choices) != len(spec.turns):
            raise ValueError(f"{task} has {len(spec.turns)} turn(s), got {len(choices)} choice(s)")
        conversation: list[dict[str, str]] = []
        for t, (turn, (question, answer)) in enumerate(zip(spec.turns, choices, strict=True)):
            prefix = f"turns[{t}]." if len(spec.turns) > 1 else ""
            q_text = _render(turn.questions[question], context, f"{spec.file}: {prefix}questions[{question}]")
            a_text = _render(turn.answers[answer], context, f"{spec.file}: {prefix}answers[{answer}]")
            conversation += [
                {"role": "user", "content": f"{IMAGE_TOKEN}\n{q_text}" if t == 0 else q_text},
                {"role": "assistant", "content": a_text},
            ]
        phrasing = "-".join(f"q{q}a{a}" for q, a in choices)
        return f"{task}/{phrasing}@{spec.version}", conversation

    def render_choice(
        self, task: str, context: dict[str, Any], question: int, answer: int
    ) -> tuple[str, list[dict[str, str]]]:
        """Render one given phrasing of a single-turn task: (template_id, [user turn, assistant turn])."""
        return self.render_turns(task, context, [(question, answer)])

    def render(self, task: str, context: dict[str, Any], choice_key: str) -> tuple[str, list[dict[str, str]]]:
        """Render `task` with the phrasings picked from sha256(choice_key) (0-based indices in the id).

        Turn 0 hashes the key itself (single-turn ids are unchanged), turn t > 0 hashes `key|turn{t}`.
        """
        choices = []
        for t, (n_questions, n_answers) in enumerate(self.turn_counts(task)):
            key = choice_key if t == 0 else f"{choice_key}|turn{t}"
            h = int(hashlib.sha256(key.encode()).hexdigest(), 16)
            choices.append((h % n_questions, (h // n_questions) % n_answers))
        return self.render_turns(task, context, choices)
