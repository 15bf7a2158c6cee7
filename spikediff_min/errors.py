"""Faults a user can fix, and how run_all.py reports them: one line, non-zero exit, no traceback.

Every error raised for a user's fault (a missing or corrupt file, an unavailable device, a flag
out of range, a full disk, a diverging loss) is a `UserError` whose message names the problem,
the file and the fix. `report` turns it (and anything unexpected) into one line on stderr and
exit code 1; `--debug` re-raises instead, for the traceback.

    try:
        ...
    except BaseException as e:
        errors.report(e, debug=args.debug)
"""
import sys


class UserError(Exception):
    """A fault the user can fix; the message names the problem, the file and the fix."""


def one_line(text, limit=300):
    """The first line of `text`, at most `limit` characters (library messages run to paragraphs)."""
    line = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return line if len(line) <= limit else line[:limit - 3] + "..."


def report(e, debug=False):
    """Exit with one line for `e` (status 1; 130 for Ctrl-C), or re-raise it under --debug."""
    if debug or isinstance(e, SystemExit):
        raise e
    if isinstance(e, KeyboardInterrupt):
        print("interrupted. Fix: rerun the same command with --resume to continue from the last "
              "checkpoint.", file=sys.stderr)
        sys.exit(130)
    if isinstance(e, UserError):
        sys.exit(f"error: {' '.join(str(e).split())}")
    sys.exit(f"error: unexpected {type(e).__name__}: {one_line(e)}. Fix: rerun with --debug for the "
             f"traceback and report it; checkpoints already in --out are kept.")
