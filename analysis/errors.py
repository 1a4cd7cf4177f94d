"""The one exception type the analysis package raises for user-caused problems."""


class AnalysisError(ValueError):
    """A problem with the user's table or options. Its message is one line naming the problem;
    command-line front ends print it as ``<prog>: error: <message>`` and exit with status 2."""
