"""Files that outlive a session: the per-item result cache, baseline files and run files.

Reads and writes records atomically (temp file + ``os.replace``, a lock where xdist workers
may write at once); a file it cannot read is reported and left untouched. Decides nothing:
the verdicts on what it reads are ``measures``'. May import ``measures``, ``records``, ``spec``,
``errors`` and ``fileio``.
"""
