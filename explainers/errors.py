"""The one exception type for problems a user can cause and fix."""


class InputError(ValueError):
    """A user-caused problem, carrying one sentence that names the input and what is wrong.

    Pages show ``str(error)`` with ``st.error`` and carry on; the CLI prints it on
    one line of stderr. Everything else is a bug and may propagate.
    """


class ModelUnavailableError(InputError):
    """A model cannot be loaded here (e.g. its weights need a download and we are offline)."""
