"""What a model name and version may be: they become folder names and S3 keys, so no path tricks."""

from __future__ import annotations

import re

import semantic_version

# Lower-case letters, digits, '.', '_', '-'; starts with a letter or digit; no '..' (see check_name).
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_VERSION_CHARS = re.compile(r"^[0-9A-Za-z.+-]{1,64}$")


class RegistryError(Exception):
    """A refused registry operation; the message names what is wrong and where."""


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise RegistryError(f"model name {name!r}: expected 1-64 of a-z 0-9 . _ - starting with a letter or digit "
                            "(no '/', '..', upper case or spaces: it becomes a folder name and an S3 key)")
    return name


def check_version(version: str) -> semantic_version.Version:
    if not isinstance(version, str) or not _VERSION_CHARS.match(version):
        raise RegistryError(f"version {version!r}: expected a semantic version such as 1.2.0")
    try:
        return semantic_version.Version(version)
    except ValueError:
        raise RegistryError(f"version {version!r}: not a semantic version (MAJOR.MINOR.PATCH, e.g. 1.2.0)") from None
