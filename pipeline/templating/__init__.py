"""Instruction templates: load, check at start-up, render deterministically.

One YAML file per task family under `templates/` gives `task`, `version`, `requires` (a subset of
{emotion, aus, conflict}), `description`, and either `questions` and `answers` (Jinja strings: one
user turn, one assistant turn) or `turns`, a list of such {questions, answers} mappings for a
multi-turn conversation (each turn's phrasing is picked independently). Every string is compiled in
a sandbox with StrictUndefined and rendered against built-in example contexts when the library loads, so a
broken template fails at start-up with its file and index, never half-way through a run. The
environment has no loader (a template cannot include, import or extend a file), and a template that
names a private attribute (`__class__`, `_x`) is refused at load even in a branch no example reaches.

Templates never contain `<image>`: `render` puts it once, at the start of the first user turn.
The phrasing (question index, answer index, per turn) is picked from sha256(choice_key): a rebuild
gives the same text, a new seed (part of the key) gives a new mix.

The context builder (`context`) and the library (`library`) are separate modules; the names callers
use are importable from here.
"""

from pipeline.templating.context import (
    EXAMPLE_CONTEXTS,
    GRADES,
    LEVELS,
    build_context,
    example_contexts,
    intensity_grade,
    intensity_level,
)
from pipeline.templating.library import (
    IMAGE_TOKEN,
    REQUIREMENTS,
    TaskTemplates,
    TemplateError,
    TemplateLibrary,
    TemplateSecurityError,
    Turn,
    au_text,
    check_static,
    join_and,
    make_environment,
)

__all__ = [
    "EXAMPLE_CONTEXTS", "GRADES", "IMAGE_TOKEN", "LEVELS", "REQUIREMENTS", "TaskTemplates", "TemplateError",
    "TemplateLibrary", "TemplateSecurityError", "Turn", "au_text", "build_context", "check_static", "example_contexts",
    "intensity_grade", "intensity_level", "join_and", "make_environment",
]
