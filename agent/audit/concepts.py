"""Concepts files for `interp audit`: YAML, one entry per concept a person flagged.

    concepts:
      - name: French language
        description: text written in French
        positive: ["Bonjour, comment allez-vous ?", ...]   # optional: texts with the concept
        negative: ["Good morning, how are you?", ...]      # optional: texts without it

Where `positive` or `negative` is left out, the audit has the LLM write them and records what it wrote,
so the audit can be rerun exactly. A list that is given must not be empty.
"""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from tools.errors import InterpError

MAX_TEXT_CHARS = 400


@dataclass(frozen=True)
class Concept:
    name: str
    description: str
    positive: tuple[str, ...] | None
    negative: tuple[str, ...] | None

    @property
    def key(self) -> str:
        """Of the concept as written in the file: written examples are reused only for this exact concept."""
        return hashlib.sha256(json.dumps([self.name, self.description]).encode()).hexdigest()[:16]


def texts_of(entry: dict, field: str, where: str) -> tuple[str, ...] | None:
    if field not in entry or entry[field] is None:
        return None
    value = entry[field]
    if not isinstance(value, list) or not all(isinstance(text, str) and text.strip() for text in value):
        raise InterpError(f"{where}: '{field}' must be a list of non-empty texts, got {value!r}")
    if not value:
        raise InterpError(f"{where}: '{field}' is an empty list; give at least 3 texts, or leave it out and the "
                          "LLM writes them")
    return tuple(text.strip()[:MAX_TEXT_CHARS] for text in value)


def load_concepts(path: Path) -> list[Concept]:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InterpError(f"no concepts file at {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise InterpError(f"{path} is not valid YAML{at}: {getattr(error, 'problem', error)}") from None
    entries = data.get("concepts") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise InterpError(f"{path} must hold a non-empty list under 'concepts:' (see examples/concepts.yaml)")
    concepts, names = [], set()
    for index, entry in enumerate(entries, 1):
        where = f"{path}: concept {index}"
        if not isinstance(entry, dict):
            raise InterpError(f"{where} must be a mapping with name, description, positive, negative")
        unknown = set(entry) - {"name", "description", "positive", "negative"}
        if unknown:
            raise InterpError(f"{where} has unknown keys {sorted(unknown)}; expected name, description, positive, "
                              "negative")
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            raise InterpError(f"{where} has no name")
        if name.strip() in names:
            raise InterpError(f"{where}: the name '{name.strip()}' is used twice")
        names.add(name.strip())
        description = entry.get("description") or name
        if not isinstance(description, str):
            raise InterpError(f"{where} ('{name}'): description must be text, got {description!r}")
        concepts.append(Concept(name.strip(), description.strip(), texts_of(entry, "positive", where),
                                texts_of(entry, "negative", where)))
    return concepts
