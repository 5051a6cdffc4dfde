"""The one exception type the CLI turns into a one-line message and a non-zero exit.

Anything raised as `InterpError` is the user's to fix (a bad path, an unknown hook); anything else
is our bug and keeps its traceback.
"""


class InterpError(Exception):
    """A problem with the user's input or environment, stated in one line."""


class Interrupted(InterpError):
    """The user stopped a run (Ctrl-C); its work so far is checkpointed and a rerun resumes it."""

    exit_code = 130


class FeatureFailure(InterpError):
    """A failure that belongs to one feature (an LLM call that failed after its retries, an unusable
    answer, a scorer with nothing to score): recorded in the catalog with its message, and the run goes on."""
