"""Loaded by schemathesis (SCHEMATHESIS_HOOKS, set by scripts/contract.sh).

CPython 3.11 (Debian 12's python3) sometimes fails `ast.parse` with "SystemError: AST constructor
recursion depth mismatch" (CPython issue 106905) when hypothesis parses its own sources to
describe a lambda for a strategy's repr. The description is cosmetic, so a failed one falls back
to the function's name instead of ending the operation's tests with a runtime error.
"""

import hypothesis.internal.reflection as reflection
import hypothesis.strategies._internal.lazy as lazy

_describe = reflection.get_pretty_function_description


def _describe_or_name(f):
    try:
        return _describe(f)
    except SystemError:
        return getattr(f, "__name__", "<function>")


reflection.get_pretty_function_description = _describe_or_name
lazy.get_pretty_function_description = _describe_or_name
