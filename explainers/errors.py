"""The one exception type for problems a user can cause and fix."""


class InputError(ValueError):
    """A user-caused problem, carrying one sentence that names the input and what is wrong.

    Pages show ``str(error)`` with ``st.error`` and carry on; the CLI prints it on
    one line of stderr. Everything else is a bug and may propagate.
    """


class ModelUnavailableError(InputError):
    """A model cannot be loaded here (e.g. its weights need a download and we are offline)."""


# How much of a user's own text (a name, a path, a link's value) a message repeats: enough to recognise it, never
# so much that one pasted value fills the page (a 60,000-character name in a link once stretched the sidebar).
ECHO_LIMIT = 100


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """``count`` and ``noun``, plural unless one: "1 image", "2 images", "1,000 images"; ``plural`` for a noun that
    does not take an s ("classes", "strategies")."""
    return f"{count:,} {noun if count == 1 else plural or noun + 's'}"


def echo(text: object, limit: int = ECHO_LIMIT) -> str:
    """``text`` as a message repeats it: whole when short, else its start and end around an ellipsis.

    The end is kept because that is where paths and file names differ.
    """
    text = str(text)
    if len(text) <= limit:
        return text
    head = (limit - 1) * 2 // 3
    return f"{text[:head]}…{text[len(text) - (limit - 1 - head):]}"
