"""``python -m shared_object``: the shared-object command."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())
