"""The one exception type the analysis package raises for user-caused problems."""


class AnalysisError(ValueError):
    """A problem with the user's table or options. Its message is one line naming the problem;
    command-line front ends print it as ``<prog>: error: <message>`` and exit with status 2."""


def run_command(prog: str, command, user_errors: tuple = ()) -> int:
    """Run `command() -> exit status` under the one convention of every command-line front end
    (`lab ...` and `python -m analysis ...`): a user-caused error (AnalysisError, `user_errors`, a
    full disk, a path too long for the file system) prints one line ``<prog>: error: <message>``
    on stderr and returns 2; Ctrl-C returns 130."""
    import errno
    import sys

    try:
        return command()
    except (AnalysisError, *user_errors) as e:
        print(f"{prog}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno == errno.ENAMETOOLONG:
            print(
                f"{prog}: error: path too long for the file system: {_shortened(e.filename)} ({e.strerror}); "
                "use a shorter name (each part at most 255 bytes on most file systems)",
                file=sys.stderr,
            )
            return 2
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        print(
            f"{prog}: error: disk full writing {e.filename or 'a file'} ({e.strerror}); free space and run "
            "the same command again",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _shortened(name, keep: int = 60) -> str:
    """A long path as its first and last characters, so that the message stays readable."""
    text = str(name or "a path")
    return text if len(text) <= 2 * keep else f"{text[:keep]}...{text[-keep:]} ({len(text)} characters)"
