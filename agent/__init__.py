"""What a user runs: the command line, terminal views, labeling, investigation, ask, audit and evals.

The planted features of `evals` are registered here as a feature source (`--hook planted`), imported only
when a run asks for them.
"""

from typing import TYPE_CHECKING

from tools.feature_sources import register_source

if TYPE_CHECKING:  # torch stays unloaded until a command needs it
    from evals.planted import PlantedSource
    from tools.model.subject import SubjectModel

PLANTED_HOOK = "planted"


def planted_source(subject: "SubjectModel") -> "PlantedSource":
    from evals.planted import PlantedSource

    return PlantedSource.over(subject)


register_source(PLANTED_HOOK, planted_source)
