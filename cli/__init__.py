"""jobledger.cli: the ``jobledger`` command line: run the demo, look into a log file (its
jobs, marks and resources), follow it live, check it, and move it between files.

::

    jobledger demo [--db PATH] [--jobs N] [--fresh] [--no-live] [--pause SECONDS]
    jobledger list [--db PATH] [--user U] [--status S] [--type T] [--limit N]
    jobledger show JOB_ID [--db PATH]
    jobledger history JOB_ID [--db PATH]
    jobledger marks RESOURCE [--db PATH] [--jsonld]
    jobledger resources [--db PATH] [--limit N]
    jobledger content RESOURCE [--db PATH]
    jobledger tail [JOB_ID] [--db PATH] [--type T] [--after SEQ] [--count N]
    jobledger replay [--db PATH] [--until-seq SEQ | --until TIME]
    jobledger verify [--db PATH] [--digest SEQ:HASH]
    jobledger digest [--db PATH]
    jobledger export [--db PATH] [--out FILE] [--after SEQ]
    jobledger import FILE [--db PATH]

Exit codes: 0 success; 1 a jobledger error (an unknown job, a damaged file,
a failed verification, a refused import, an unknown resource); 2 a usage
error or a missing file.
Only ``demo`` and ``import`` create a log file; every other command refuses
a path that does not exist.

What a job carries is shown, never obeyed: every human-readable line, on
standard output and standard error, shows the text the CLI did not write
itself through :func:`jobledger.terminal.printable` (control, C1, bidi and
format characters, and a field's newlines and tabs, as escapes) and as rich
``Text`` on a console with markup off (``[bold]`` is printed as written).
``export`` and ``marks --jsonld`` print exact JSON; ``content`` prints the
stored bytes into a file or pipe, and on a terminal its lines escaped.

The command line sits above the face and the application (it runs the
demo of :mod:`jobledger.annotations`); nothing in the engine imports it.
Its modules, one concern each: :mod:`.main` (the entry point),
:mod:`.parser` (the grammar), :mod:`.common` (the console and the log
file), :mod:`.formatting` (tables and lines), and the commands by concern:
:mod:`.demo_command`, :mod:`.jobs`, :mod:`.marks`, :mod:`.follow`,
:mod:`.audit`.
"""

from .main import main

__all__ = ["main"]
