"""Which git names a request may use: the branch a workspace gets and the ref it starts
from. Both reach git's argv, so they are held to a plain form, stricter than git's own
rules: nothing in them can be read as an option, a path or revision syntax.
"""

from __future__ import annotations

import re

BRANCH_PREFIX = "ccx/"
_BRANCH_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(?:/[A-Za-z0-9][A-Za-z0-9._-]*)*")
_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f]")


def branch_name_problem(name: str) -> str | None:
    """Why `ccx/<name>` cannot be a branch, or None. Stricter than git: no option, path or
    revision syntax can come through (no `..`, no leading `-` or `.`, no `.lock` part)."""
    if not _BRANCH_NAME.fullmatch(name):
        return "use letters, digits, '.', '_' and '-', parts separated by single '/'"
    parts = name.split("/")
    if any(".." in p or p.endswith((".", ".lock")) for p in parts):
        return "no '..', and no part may end in '.' or '.lock'"
    return None


def ref_problem(ref: str) -> str | None:
    """Why `ref` cannot name a base commit, or None: no option, no range, no whitespace."""
    if ref.startswith("-"):
        return "it may not start with '-'"
    if _REF_FORBIDDEN.search(ref):
        return "it may not hold whitespace or control characters"
    if ".." in ref:
        return "it names one commit, not a range ('..')"
    return None
