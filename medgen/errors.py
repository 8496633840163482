"""Error types shared by the library and the CLI.

Every error a user can cause carries a one-line message that names the file or field and what was
expected. The CLI maps :class:`InputError` to exit code 2 and prints only the message unless
``--debug`` is given.
"""

from __future__ import annotations

from pathlib import Path


class MedgenError(Exception):
    """Base class of medgen's own errors (exit code 1 from the CLI)."""

    exit_code = 1


class InputError(MedgenError, ValueError):
    """Bad user input: an unreadable file, a malformed datalist, an invalid option (exit code 2).

    Args:
        subject: The file path or the option/field name the problem is about.
        problem: What was wrong and what was expected, as one short sentence.
    """

    exit_code = 2

    def __init__(self, subject: str | Path, problem: str) -> None:
        self.subject = str(subject)
        self.problem = problem
        super().__init__(f"{self.subject}: {problem}")


class ImageReadError(InputError):
    """An image file or DICOM series cannot be read as a valid medical image."""


def article(word: str) -> str:
    """``an`` before a word starting with a vowel letter, else ``a`` (for messages such as "is an autoencoder")."""
    return "an" if word[:1].lower() in "aeiou" else "a"
