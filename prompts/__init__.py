"""Prompt templates as files, each with a version; the hash of the exact text travels with every result.

A file starts with a `version: N` line and a `---` line; the rest is the template, with `$name`
placeholders (string.Template), so braces and other characters in corpus text need no escaping and
a substituted value is never itself parsed as a template.
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path
from string import Template

from tools.errors import InterpError

PROMPTS_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Prompt:
    name: str
    version: int
    template: str
    sha256: str
    """Of the whole file, version line included: a changed word gives a new hash even if nobody bumped
    the version."""

    def render(self, **values: str) -> str:
        try:
            return Template(self.template).substitute(values)
        except KeyError as missing:
            raise InterpError(f"prompt '{self.name}' needs a value for {missing}") from None

    @property
    def ref(self) -> str:
        return f"{self.name}@v{self.version}"


def load_prompt(name: str, folder: Path = PROMPTS_DIR) -> Prompt:
    path = folder / f"{name}.md"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in folder.glob("*.md")))
        raise InterpError(f"no prompt '{name}' in {folder}; known: {known}")
    raw = path.read_text(encoding="utf-8")
    header, separator, template = raw.partition("\n---\n")
    key, _, value = header.partition(":")
    if not separator or key.strip() != "version" or not value.strip().isdigit():
        raise InterpError(f"prompt file {path} must start with 'version: N' and a '---' line")
    return Prompt(name, int(value), template, hashlib.sha256(raw.encode()).hexdigest()[:16])
