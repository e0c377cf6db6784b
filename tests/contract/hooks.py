"""Loaded by schemathesis (SCHEMATHESIS_HOOKS, set by scripts/contract.sh).

CPython 3.11 (Debian 12's python3) sometimes fails `ast.parse` with "SystemError: AST constructor
recursion depth mismatch" (a known CPython 3.11 bug in its AST validation) when hypothesis parses its own sources to
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


import uuid  # noqa: E402

import schemathesis  # noqa: E402


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    """A positive case sending both `command_id` and `Idempotency-Key` names one command.

    Each is well-formed alone, but two different commands in one request are refused with the
    documented 422 command_id_mismatch, and random values nearly always differ: most commands
    never reached their aggregate. Negative cases are left as generated; integration tests cover
    the mismatch, replays and reuse.
    """
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return
    # A case may be negative in one component only (the query's or the headers' values).
    if any(info.mode.is_negative for info in meta.components.values()):
        return
    if "command_id" in (case.query or {}) and "Idempotency-Key" in (case.headers or {}):
        # A fresh id: hypothesis draws the same few values again and again, and a reused id with
        # another body is the documented 422 idempotency_key_reused rather than a new command.
        command_id = str(uuid.uuid4())
        case.query["command_id"] = command_id
        case.headers["Idempotency-Key"] = command_id
