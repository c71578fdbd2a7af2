"""jobledger.cli: the ``jobledger`` command line: run the demo, look into a log file (its
jobs, marks and resources), follow it live, check it, and move it between files.

::

    jobledger demo [--db URL] [--jobs N] [--fresh] [--no-live] [--pause SECONDS]
    jobledger list [--db URL] [--user U] [--status S] [--type T] [--limit N] [--json]
    jobledger show JOB_ID [--db URL] [--json]
    jobledger history JOB_ID [--db URL]
    jobledger marks RESOURCE [--db URL] [--jsonld]
    jobledger resources [--db URL] [--limit N]
    jobledger content RESOURCE [--db URL]
    jobledger tail [JOB_ID] [--db URL] [--type T] [--after SEQ] [--count N]
    jobledger replay [--db URL] [--until-seq SEQ | --until TIME]
    jobledger verify [--db URL] [--digest SEQ:HASH]
    jobledger digest [--db URL]
    jobledger export [--db URL] [--out FILE] [--after SEQ]
    jobledger import FILE [--db URL]

    jobledger worker --app MODULE:ATTR [--db URL] [--types A,B] [--concurrency N]
                     [--grace SECONDS]
    jobledger submit TYPE [--db URL] [--params JSON | --params-file F] [--user U]
                     [--idempotency-key K] [--priority P] [--run-at ISO]
                     [--wait [--timeout S]] [--json]
    jobledger cancel|suspend|resume|retry|delete JOB_ID [--db URL] [--user U] [--json]
    jobledger cleanup --older-than AGE [--db URL] [--status S]... [--json]
    jobledger --version

Exit codes, the same for every command (``main.exit_code``): 0 success; 1
the command ran and reports a failure (a failed verification; the worker's
ledger failed); 2 bad usage or input (a bad option or value, a missing log
file, a path that is not a jobledger log, a refused import); 3 not found
(an unknown job or resource); 4 an illegal transition; 5 a storage error
(a damaged file, a schema to migrate).
Only ``demo``, ``import`` and ``worker`` (a service's first start) create a
log file; every other command refuses a path that does not exist. ``--db`` takes a path or a URL (``sqlite:///jobs.db``,
``memory://`` for the demo; see ``jobledger.store.url``), else the
``JOBLEDGER_DB`` environment variable, else ``jobledger.db``, for every command.

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
:mod:`.audit`, :mod:`.operate` (the commands that change jobs) and
:mod:`.worker_command`.
"""

from .main import main

__all__ = ["main"]
