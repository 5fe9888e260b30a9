"""``shared-object view``: shared objects live in the browser, through Rerun (extra ``view``).

- ``mapping``: which Rerun view each leaf of a value gets, or why none (no Rerun import);
- ``server``: Rerun's server in a child process, bound where asked, analytics off;
- ``command``: the command, one thread per followed object.
"""
