"""Guest-side runtime shared by ivfarm's cloud-init part-handlers.

A handler module imports this with a line ending in ``# ivfarm: inline``; ``ivfarm context pack``
replaces that line with this file's text, so every handler in the archive stands alone. It
therefore runs on the guest's Python 3 (3.6 or later) with only the standard library and PyYAML.

A handler is a name plus a pure ``plan(config, facts)`` returning steps (``Command``,
``WriteFile``, ``AppendLines``); ``PartHandler`` parses each part, plans, runs the steps, logs
everything to ``<log dir>/<name>.log`` and records ok/FAILED in ``<log dir>/summary.log``.
Environment:
  IVFARM_CONTEXT_DRY_RUN=1   log commands instead of running them (also: true, yes)
  IVFARM_CONTEXT_ROOT=DIR    prefix for every file written (in dry-run, files are written only
                             when a root is given)
  IVFARM_CONTEXT_LOG_DIR=DIR log directory (default /var/log/ivfarm-context)
  IVFARM_CONTEXT_FACTS=FILE  YAML mapping of fact name -> value, used instead of probing the guest
"""
import logging
import os
import shlex
import subprocess
import traceback
from typing import Callable, Dict, List, NamedTuple, Optional, Union

import yaml

DEFAULT_LOG_DIR = "/var/log/ivfarm-context"
SUMMARY_FILE = "summary.log"


class Command(NamedTuple):
    """Run ``argv``; a non-zero exit stops the handler."""

    argv: List[str]


class WriteFile(NamedTuple):
    """Write ``content`` to ``path`` (replacing the file) with ``mode``."""

    path: str
    content: str
    mode: int = 0o644


class AppendLines(NamedTuple):
    """Append to ``path`` each of ``lines`` not already in it (``/etc/fstab`` style)."""

    path: str
    lines: List[str]


Step = Union[Command, WriteFile, AppendLines]


class PlanError(Exception):
    """The configuration cannot be applied to this guest; the message says why."""


class StepFailed(Exception):
    """A step of the plan failed on the guest."""


def replace_file(path: str, content: str, mode: int) -> None:
    """Atomically give ``path`` this content and mode (temp file beside it, created with ``mode``,
    fsynced, renamed over it).

    This runs inside the guest, inlined into each self-contained part-handler, so it cannot use
    ``fileops.atomic`` (the control plane's one atomic write); keep the two alike."""
    temporary = "%s.%s.tmp" % (os.path.join(os.path.dirname(path), "." + os.path.basename(path)),
                               os.urandom(4).hex())
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(handle, "w") as stream:
            os.fchmod(stream.fileno(), mode)
            stream.write(content)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def shell_line(argv: List[str]) -> str:
    """Return ``argv`` as one shell-quoted line (for logs)."""
    return " ".join(shlex.quote(arg) for arg in argv)


def probe_output(argv: List[str]) -> str:
    """Run a read-only probe command and return its standard output."""
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, universal_newlines=True)
    except OSError as exc:
        raise PlanError("cannot run %s: %s" % (argv[0], exc.strerror)) from exc
    if proc.returncode != 0:
        raise PlanError("%s exited %d: %s" % (shell_line(argv), proc.returncode,
                                             proc.stderr.strip()))
    return proc.stdout


class Facts:
    """Facts about the guest, from the facts file when it names them, else probed."""

    def __init__(self, given: Optional[Dict[str, object]] = None) -> None:
        self._given = dict(given or {})

    @classmethod
    def from_environment(cls) -> "Facts":
        """Load ``IVFARM_CONTEXT_FACTS`` when set."""
        path = os.environ.get("IVFARM_CONTEXT_FACTS")
        if not path:
            return cls()
        try:
            with open(path) as stream:
                given = yaml.safe_load(stream)
        except (OSError, yaml.YAMLError) as exc:
            raise PlanError("cannot read facts file %s: %s" % (path, exc)) from exc
        if given is not None and not isinstance(given, dict):
            raise PlanError("facts file %s must hold a mapping" % path)
        return cls(given)

    def get(self, name: str, probe: Callable[[], object]) -> object:
        """Return the fact ``name``, calling ``probe`` when the facts file does not give it."""
        if name in self._given:
            return self._given[name]
        return probe()


class Executor:
    """Runs (or, in dry-run, logs) the steps of a plan."""

    def __init__(self, log: logging.Logger, dry_run: bool, root: Optional[str]) -> None:
        self.log = log
        self.dry_run = dry_run
        self.root = root

    def target(self, path: str) -> str:
        """Where ``path`` of the guest lives under the root prefix."""
        return os.path.join(self.root, path.lstrip("/")) if self.root else path

    def run(self, step: Step) -> None:
        """Carry out one step; raise ``StepFailed`` when it fails."""
        if isinstance(step, Command):
            self._command(step.argv)
        elif isinstance(step, WriteFile):
            self._write(step.path, step.content, step.mode)
        else:
            self._append(step.path, step.lines)

    def _command(self, argv: List[str]) -> None:
        line = shell_line(argv)
        if self.dry_run:
            self.log.info("DRY-RUN %s", line)
            return
        self.log.info("RUN %s", line)
        try:
            proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, universal_newlines=True)
        except OSError as exc:
            raise StepFailed("cannot run %s: %s" % (argv[0], exc.strerror)) from exc
        for output in proc.stdout.splitlines():
            self.log.info("  | %s", output)
        if proc.returncode != 0:
            raise StepFailed("%s exited %d" % (line, proc.returncode))

    def _writes_files(self, path: str, text: str) -> bool:
        if self.dry_run and not self.root:
            self.log.info("DRY-RUN write %s:\n%s", path, text)
            return False
        return True

    def _write(self, path: str, content: str, mode: int) -> None:
        if not self._writes_files(path, content):
            return
        target = self.target(path)
        try:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            replace_file(target, content, mode)
        except OSError as exc:
            raise StepFailed("cannot write %s: %s" % (target, exc.strerror)) from exc
        self.log.info("WROTE %s (mode %o):\n%s", target, mode, content)

    def _append(self, path: str, lines: List[str]) -> None:
        if not self._writes_files(path, "\n".join(lines)):
            return
        target = self.target(path)
        try:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "a+") as stream:
                stream.seek(0)
                present = set(line.rstrip("\n") for line in stream)
                missing = [line for line in lines if line not in present]
                stream.writelines(line + "\n" for line in missing)
        except OSError as exc:
            raise StepFailed("cannot append to %s: %s" % (target, exc.strerror)) from exc
        for line in missing:
            self.log.info("APPENDED to %s: %s", target, line)


def dry_run_requested() -> bool:
    """Whether ``IVFARM_CONTEXT_DRY_RUN`` asks for a dry run (1, true or yes)."""
    return os.environ.get("IVFARM_CONTEXT_DRY_RUN", "").lower() in ("1", "true", "yes")


def log_dir() -> str:
    """The directory holding the handlers' logs and the summary."""
    return os.environ.get("IVFARM_CONTEXT_LOG_DIR") or DEFAULT_LOG_DIR


def record_summary(directory: str, name: str, line: str) -> None:
    """Set ``name``'s line in the summary file, keeping the other handlers' lines."""
    path = os.path.join(directory, SUMMARY_FILE)
    try:
        with open(path) as stream:
            kept = [old for old in stream.read().splitlines() if not old.startswith(name + ": ")]
    except FileNotFoundError:
        kept = []
    replace_file(path, "\n".join(kept + [name + ": " + line]) + "\n", 0o644)


class PartHandler:
    """A cloud-init part-handler for ``text/<name>-config`` parts, built on a ``plan``."""

    def __init__(self, name: str, plan: Callable[[dict, Facts], List[Step]]) -> None:
        self.name = name
        self.plan = plan
        self.log = logging.getLogger("ivfarm.context." + name)
        self._file_handler = None  # type: Optional[logging.Handler]
        self._parts = 0
        self._steps = 0
        self._failure = None  # type: Optional[str]

    def list_types(self) -> List[str]:
        """The content type this handler claims."""
        return ["text/%s-config" % self.name]

    def handle_part(self, data: object, ctype: str, filename: Optional[str],
                    payload: Optional[str]) -> None:
        """cloud-init's entry point; never raises, failures go to the log and the summary."""
        try:
            if ctype == "__begin__":
                self._begin()
            elif ctype == "__end__":
                self._end()
            elif ctype in self.list_types():
                self._apply(filename, payload)
        except Exception:  # a handler must never break cloud-init
            self._failure = self._failure or "internal error"
            self.log.error("%s handler error:\n%s", self.name, traceback.format_exc())

    def _begin(self) -> None:
        directory = log_dir()
        os.makedirs(directory, exist_ok=True)
        self._close_log()
        self._file_handler = logging.FileHandler(os.path.join(directory, self.name + ".log"))
        self._file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        self.log.addHandler(self._file_handler)
        self.log.setLevel(logging.INFO)
        self._parts, self._steps, self._failure = 0, 0, None
        self.log.info("%s handler starting (pid %d)", self.name, os.getpid())

    def _apply(self, filename: Optional[str], payload: Optional[str]) -> None:
        if self._file_handler is None:
            self._begin()
        self._parts += 1
        self.log.info("part %s:\n%s", filename, payload)
        try:
            config = self._section(payload or "")
            facts = Facts.from_environment()
            steps = self.plan(config, facts)
            executor = Executor(self.log, dry_run_requested(),
                                os.environ.get("IVFARM_CONTEXT_ROOT") or None)
            self.log.info("plan: %d steps%s", len(steps), " (dry-run)" if executor.dry_run else "")
            for step in steps:
                executor.run(step)
                self._steps += 1
        except (PlanError, StepFailed) as exc:
            self._failure = str(exc)
            self.log.error("FAILED: %s", exc)

    def _section(self, payload: str) -> dict:
        try:
            doc = yaml.safe_load(payload)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = " (line %d)" % (mark.line + 1) if mark else ""
            raise PlanError("part is not valid YAML%s: %s"
                            % (where, getattr(exc, "problem", None) or exc)) from exc
        if not isinstance(doc, dict) or not isinstance(doc.get(self.name), dict):
            raise PlanError("part must hold a '%s:' mapping" % self.name)
        return doc[self.name]

    def _end(self) -> None:
        if self._file_handler is None:
            self._begin()
        if self._failure:
            line = "FAILED (%s; see %s)" % (" ".join(self._failure.split()),
                                            os.path.join(log_dir(), self.name + ".log"))
        elif self._parts == 0:
            line = "ok (no %s part)" % self.list_types()[0]
        else:
            line = "ok (%d steps)" % self._steps
        self.log.info("%s handler finished: %s", self.name, line)
        try:
            record_summary(log_dir(), self.name, line)
        except OSError as exc:
            self.log.error("cannot update the summary: %s", exc)
        self._close_log()

    def _close_log(self) -> None:
        if self._file_handler is not None:
            self.log.removeHandler(self._file_handler)
            self._file_handler.close()
            self._file_handler = None
