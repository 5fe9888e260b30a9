"""Shared objects live in the browser, through Rerun (extra ``view``); the command is
``shared_object.cli.view``.

- ``mapping``: which Rerun view each leaf of a value gets, or why none (no Rerun import);
- ``server``: Rerun's server in a child process, bound where asked, analytics off;
- ``viewer``: one thread per followed object, logging what changes.
"""
