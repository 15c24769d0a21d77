"""One exception type for every mistake a user can make, with a message that names the fix."""


class PipelagError(ValueError):
    """Bad user input (unknown name, invalid δ, incompatible architecture/env, malformed config...).

    The CLI prints only the message of this error (no traceback); the Python API raises it.
    """
