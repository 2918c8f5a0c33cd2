"""Errors a user can act on: each message names the file, column or parameter at fault."""


class InputError(Exception):
    """The input (a file, a repository, an argument) is not what the step needs."""


class NotARepositoryError(InputError):
    """The path given as a Gen2 repository is not one."""
