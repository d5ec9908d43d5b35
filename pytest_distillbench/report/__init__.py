"""What a person reads: the terminal table, the HTML report and plot, the Markdown summary and
the comparison of two run files.

Reads records, results and stored files; never runs a model (it may not import ``engine``).
May import ``store``, ``measures``, ``records``, ``spec``, ``errors`` and ``fileio``.
"""
